-- errand schema version 6: per-key limits and rate limits. A job may carry a partition key
-- ("C" collation: keys compare as bytes, the order the claim walks them in); a queue's record
-- may hold a per-key limit, a rate limit with its token bucket, a rate per key (each key's
-- bucket in queue_keys, absent when full), and the key its last claim stopped at. Both job
-- indexes hold only keyed jobs: a queue without keys pays nothing for them.
ALTER TABLE {schema}.jobs ADD COLUMN partition_key text COLLATE "C";
ALTER TABLE {schema}.queues
    ADD COLUMN max_per_key    integer CHECK (max_per_key > 0),
    ADD COLUMN rate_starts    integer CHECK (rate_starts > 0),
    ADD COLUMN rate_period_ms bigint  CHECK (rate_period_ms > 0),
    ADD COLUMN tokens         double precision,
    ADD COLUMN refilled_at    timestamptz,
    ADD COLUMN key_cursor     text COLLATE "C",
    ADD COLUMN key_rate_starts    integer CHECK (key_rate_starts > 0),
    ADD COLUMN key_rate_period_ms bigint  CHECK (key_rate_period_ms > 0);
CREATE TABLE {schema}.queue_keys (
    queue       text             NOT NULL,
    key         text COLLATE "C" NOT NULL,
    tokens      double precision NOT NULL,
    refilled_at timestamptz      NOT NULL,
    PRIMARY KEY (queue, key)
);
-- Full buckets are deleted a few at a time by the claims: found by age.
CREATE INDEX queue_keys_age ON {schema}.queue_keys (queue, refilled_at);
CREATE INDEX jobs_keyed ON {schema}.jobs (queue, partition_key, priority, run_at, id)
    WHERE state = 'available' AND partition_key IS NOT NULL;
CREATE INDEX jobs_keyed_running ON {schema}.jobs (queue, partition_key)
    WHERE state = 'running' AND partition_key IS NOT NULL;

-- The running jobs of `queue` a queue-wide limit counts: the other workers' running jobs plus
-- what the claiming `worker` holds (`held`: jobs it runs or has claimed and not started;
-- errand_core::ClaimRequest::held) — its own finished jobs, outcomes on their way, are done —
-- or every running job when `held` is NULL.
CREATE FUNCTION {schema}.running_for_limit(queue text, worker text, held bigint)
RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN held IS NULL THEN count(*)
                ELSE count(*) FILTER (WHERE j.attempted_by IS DISTINCT FROM worker) + held END
    FROM {schema}.jobs j WHERE j.state = 'running' AND j.queue = running_for_limit.queue
$$;

-- The claim's count for a queue without metering: 0 when paused or metered (per-key limit or
-- a rate: those are claimed through `claim_plan`); under a queue-wide limit the free slots,
-- the record locked first (claims of the queue take turns) and the running jobs counted
-- after the lock is held (a PL/pgSQL statement takes a fresh snapshot). A queue without a
-- record: one primary-key probe, no lock.
CREATE FUNCTION {schema}.claimable(queue text, want bigint, worker text, held bigint)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    rec {schema}.queues%ROWTYPE;
BEGIN
    SELECT * INTO rec FROM {schema}.queues q WHERE q.name = queue;
    IF NOT FOUND THEN
        RETURN want;
    END IF;
    IF rec.paused OR rec.max_per_key IS NOT NULL OR rec.rate_starts IS NOT NULL
       OR rec.key_rate_starts IS NOT NULL THEN
        RETURN 0;
    END IF;
    IF rec.max_running IS NULL THEN
        RETURN want;
    END IF;
    SELECT * INTO rec FROM {schema}.queues q WHERE q.name = queue FOR UPDATE;
    IF rec.paused OR rec.max_per_key IS NOT NULL OR rec.rate_starts IS NOT NULL
       OR rec.key_rate_starts IS NOT NULL THEN
        RETURN 0;
    END IF;
    RETURN greatest(0, least(want, coalesce(rec.max_running::bigint, want)
                                   - {schema}.running_for_limit(queue, worker, held)));
END
$$;

-- A binary from before this version claims through `claimable(queue, want)`: now the same
-- count, so it takes nothing from a metered queue rather than take past limits it cannot see.
CREATE OR REPLACE FUNCTION {schema}.claimable(queue text, want bigint) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT {schema}.claimable(queue, want, NULL::text, NULL::bigint)
$$;

-- The claim's plan for queue `p_queue` wanting `p_want` at `p_now`: `o_n` jobs to take in
-- claim order, or the jobs `o_ids` chosen here. A queue without a record or limits: `p_want`,
-- after one primary-key probe, no lock. Paused: nothing. Otherwise the record is locked (claims
-- of the queue take turns, each counting after the previous one committed: a PL/pgSQL
-- statement takes a fresh snapshot) and
-- - under a queue-wide limit only: `o_n` is the free slots;
-- - under a rate limit, a per-key limit or a rate per key, the jobs are chosen here as
--   errand_core's `claim_metered` chooses them (the same walk, the same buckets; the
--   conformance suite runs both): the bucket refilled and drawn from, keys walked round robin
--   from `key_cursor` (at most 1000 visits once a job is found, 10000 while none is:
--   errand_core::MAX_KEY_VISITS), each given at most
--   its free slots and its own bucket's tokens, the jobs without a key one turn per round
--   among the first 1000 in claim order (errand_core::UNKEYED_SCAN); then up to 100 full key
--   buckets deleted (errand_core::KEY_BUCKETS_PRUNED).
CREATE FUNCTION {schema}.claim_plan(p_queue text, p_want bigint, p_now timestamptz,
                                    p_worker text, p_held bigint,
                                    OUT o_n bigint, OUT o_ids bigint[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    rec {schema}.queues%ROWTYPE;
    v_running bigint;
    v_burst double precision;
    v_tokens double precision;
    v_at timestamptz;
    v_pos text COLLATE "C";
    v_start text COLLATE "C";
    v_key text COLLATE "C";
    v_wrapped boolean := false;
    v_room bigint;
    v_got bigint[];
    v_visits integer := 0;
    v_kburst double precision;
    v_ktokens double precision;
    v_kat timestamptz;
    v_kfound boolean;
BEGIN
    o_ids := '{}';
    SELECT * INTO rec FROM {schema}.queues q WHERE q.name = p_queue;
    IF NOT FOUND OR (NOT rec.paused AND rec.max_running IS NULL AND rec.max_per_key IS NULL
                     AND rec.rate_starts IS NULL AND rec.key_rate_starts IS NULL) THEN
        o_n := p_want;
        RETURN;
    END IF;
    o_n := 0;
    IF rec.paused THEN
        RETURN;
    END IF;
    SELECT * INTO rec FROM {schema}.queues q WHERE q.name = p_queue FOR UPDATE;
    IF rec.paused THEN
        RETURN;
    END IF;
    o_n := p_want;
    IF rec.max_running IS NOT NULL THEN
        v_running := {schema}.running_for_limit(p_queue, p_worker, p_held);
        o_n := greatest(0, least(o_n, rec.max_running - v_running));
    END IF;
    IF rec.max_per_key IS NULL AND rec.rate_starts IS NULL AND rec.key_rate_starts IS NULL THEN
        RETURN; -- the statement takes `o_n` in claim order, under this lock
    END IF;
    v_tokens := rec.tokens;
    v_at := rec.refilled_at;
    IF rec.rate_starts IS NOT NULL THEN
        v_burst := greatest(1, floor(rec.rate_starts / 10.0));
        IF v_tokens IS NULL OR v_at IS NULL THEN
            v_tokens := v_burst;
            v_at := p_now;
        ELSE
            v_tokens := least(v_burst, greatest(0, v_tokens
                + greatest(0, extract(epoch FROM p_now - v_at) * 1000)
                  * rec.rate_starts / rec.rate_period_ms));
            v_at := greatest(v_at, p_now);
        END IF;
        o_n := least(o_n, floor(v_tokens)::bigint);
    END IF;
    v_pos := rec.key_cursor;
    v_kburst := greatest(1, floor(rec.key_rate_starts / 10.0));
    IF o_n > 0 AND rec.max_per_key IS NULL AND rec.key_rate_starts IS NULL THEN
        SELECT coalesce(array_agg(s.id), '{}') INTO o_ids FROM (
            SELECT j.id FROM {schema}.jobs j WHERE j.state = 'available' AND j.queue = p_queue
            ORDER BY j.priority, j.run_at, j.id LIMIT o_n FOR UPDATE SKIP LOCKED) s;
    ELSIF o_n > 0 THEN
        v_start := v_pos;
        LOOP
            EXIT WHEN cardinality(o_ids) >= o_n OR v_visits >= 10000
                   OR (v_visits >= 1000 AND cardinality(o_ids) > 0);
            IF v_pos IS NULL THEN
                -- The jobs without a key: one turn per round.
                EXIT WHEN v_wrapped AND v_start IS NULL;
                v_wrapped := true;
                SELECT coalesce(array_agg(s.id), '{}') INTO v_got FROM (
                    SELECT j.id FROM {schema}.jobs j
                    WHERE j.id IN (SELECT c.id FROM (
                              SELECT i.id, i.partition_key FROM {schema}.jobs i
                              WHERE i.state = 'available' AND i.queue = p_queue
                              ORDER BY i.priority, i.run_at, i.id LIMIT 1000) c
                          WHERE c.partition_key IS NULL)
                      AND j.state = 'available'
                    ORDER BY j.priority, j.run_at, j.id
                    LIMIT o_n - cardinality(o_ids) FOR UPDATE SKIP LOCKED) s;
                o_ids := o_ids || v_got;
                v_pos := '';
                CONTINUE;
            END IF;
            SELECT j.partition_key INTO v_key FROM {schema}.jobs j
                WHERE j.state = 'available' AND j.queue = p_queue
                  AND j.partition_key IS NOT NULL AND j.partition_key > v_pos
                ORDER BY j.partition_key LIMIT 1;
            IF NOT FOUND THEN
                EXIT WHEN v_wrapped; -- every key visited, and the jobs without one
                v_pos := NULL;
                CONTINUE;
            END IF;
            EXIT WHEN v_wrapped AND v_start IS NOT NULL AND v_key > v_start; -- full circle
            v_visits := v_visits + 1;
            v_room := o_n - cardinality(o_ids);
            IF rec.max_per_key IS NOT NULL THEN
                SELECT count(*) INTO v_running FROM {schema}.jobs j
                    WHERE j.state = 'running' AND j.queue = p_queue
                      AND j.partition_key IS NOT NULL AND j.partition_key = v_key;
                v_room := least(v_room, rec.max_per_key - v_running);
            END IF;
            IF rec.key_rate_starts IS NOT NULL AND v_room > 0 THEN
                SELECT k.tokens, k.refilled_at INTO v_ktokens, v_kat FROM {schema}.queue_keys k
                    WHERE k.queue = p_queue AND k.key = v_key;
                v_kfound := FOUND;
                IF NOT v_kfound THEN
                    v_ktokens := v_kburst;
                    v_kat := p_now;
                ELSE
                    v_ktokens := least(v_kburst, greatest(0, v_ktokens
                        + greatest(0, extract(epoch FROM p_now - v_kat) * 1000)
                          * rec.key_rate_starts / rec.key_rate_period_ms));
                    v_kat := greatest(v_kat, p_now);
                END IF;
                v_room := least(v_room, floor(v_ktokens)::bigint);
            END IF;
            IF v_room > 0 THEN
                SELECT coalesce(array_agg(s.id), '{}') INTO v_got FROM (
                    SELECT j.id FROM {schema}.jobs j
                    WHERE j.state = 'available' AND j.queue = p_queue
                      AND j.partition_key IS NOT NULL AND j.partition_key = v_key
                    ORDER BY j.priority, j.run_at, j.id LIMIT v_room FOR UPDATE SKIP LOCKED) s;
                o_ids := o_ids || v_got;
                IF rec.key_rate_starts IS NOT NULL AND cardinality(v_got) > 0 THEN
                    INSERT INTO {schema}.queue_keys AS k (queue, key, tokens, refilled_at)
                    VALUES (p_queue, v_key, v_ktokens - cardinality(v_got), v_kat)
                    ON CONFLICT (queue, key) DO UPDATE
                        SET tokens = EXCLUDED.tokens, refilled_at = EXCLUDED.refilled_at;
                END IF;
            END IF;
            v_pos := v_key;
        END LOOP;
    END IF;
    IF rec.rate_starts IS NOT NULL THEN
        v_tokens := v_tokens - cardinality(o_ids);
    END IF;
    IF rec.key_rate_starts IS NOT NULL THEN
        -- Buckets refilled longer ago than an empty one takes to fill are full: as good as
        -- none (errand_core::RateLimit::fill_time).
        DELETE FROM {schema}.queue_keys k WHERE (k.queue, k.key) IN (
            SELECT f.queue, f.key FROM {schema}.queue_keys f
            WHERE f.queue = p_queue AND f.refilled_at < p_now - ceil(v_kburst
                  * rec.key_rate_period_ms / rec.key_rate_starts) * interval '1 millisecond'
            LIMIT 100);
    END IF;
    UPDATE {schema}.queues q SET tokens = v_tokens, refilled_at = v_at, key_cursor = v_pos
        WHERE q.name = p_queue;
    o_n := 0;
END
$$;
