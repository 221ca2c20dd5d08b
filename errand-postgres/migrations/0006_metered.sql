-- errand schema version 6: per-key limits and rate limits. A job may carry a partition key
-- ("C" collation: keys compare as bytes, the order the claim walks them in); a queue's record
-- may hold a per-key limit, a rate limit with its token bucket, and the key its last claim
-- stopped at. Both indexes hold only keyed jobs: a queue without keys pays nothing for them.
ALTER TABLE {schema}.jobs ADD COLUMN partition_key text COLLATE "C";
ALTER TABLE {schema}.queues
    ADD COLUMN max_per_key    integer CHECK (max_per_key > 0),
    ADD COLUMN rate_starts    integer CHECK (rate_starts > 0),
    ADD COLUMN rate_period_ms bigint  CHECK (rate_period_ms > 0),
    ADD COLUMN tokens         double precision,
    ADD COLUMN refilled_at    timestamptz,
    ADD COLUMN key_cursor     text COLLATE "C";
CREATE INDEX jobs_keyed ON {schema}.jobs (queue, partition_key, priority, run_at, id)
    WHERE state = 'available' AND partition_key IS NOT NULL;
CREATE INDEX jobs_keyed_running ON {schema}.jobs (queue, partition_key)
    WHERE state = 'running' AND partition_key IS NOT NULL;

-- A binary from before this version claims through `claimable`: it now takes nothing from a
-- metered queue (per-key or rate limit) rather than take past the limits it cannot see.
CREATE OR REPLACE FUNCTION {schema}.claimable(queue text, want bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    rec {schema}.queues%ROWTYPE;
    running bigint;
BEGIN
    SELECT * INTO rec FROM {schema}.queues q WHERE q.name = queue;
    IF NOT FOUND THEN
        RETURN want;
    END IF;
    IF rec.paused OR rec.max_per_key IS NOT NULL OR rec.rate_starts IS NOT NULL THEN
        RETURN 0;
    END IF;
    IF rec.max_running IS NULL THEN
        RETURN want;
    END IF;
    PERFORM 1 FROM {schema}.queues q WHERE q.name = queue FOR UPDATE;
    SELECT count(*) INTO running FROM {schema}.jobs j
        WHERE j.state = 'running' AND j.queue = claimable.queue;
    SELECT * INTO rec FROM {schema}.queues q WHERE q.name = queue;
    IF rec.paused OR rec.max_per_key IS NOT NULL OR rec.rate_starts IS NOT NULL THEN
        RETURN 0;
    END IF;
    RETURN greatest(0, least(want, coalesce(rec.max_running::bigint, want) - running));
END
$$;

-- The claim's plan for queue `p_queue` wanting `p_want` at `p_now`: `o_n` jobs to take in
-- claim order, or the jobs `o_ids` chosen here. A queue without a record or limits: `p_want`,
-- after one primary-key probe, no lock. Paused: nothing. Otherwise the record is locked (claims
-- of the queue take turns, each counting after the previous one committed: a PL/pgSQL
-- statement takes a fresh snapshot) and
-- - under a queue-wide limit only: `o_n` is the free slots;
-- - under a rate limit or a per-key limit, the jobs are chosen here as errand_core's
--   `claim_metered` chooses them (the same walk, the same bucket; the conformance suite runs
--   both): the bucket refilled and drawn from, keys walked round robin from `key_cursor`,
--   each given at most its free slots, the jobs without a key one turn per round among the
--   first 1000 in claim order (errand_core::UNKEYED_SCAN).
CREATE FUNCTION {schema}.claim_plan(p_queue text, p_want bigint, p_now timestamptz,
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
BEGIN
    o_ids := '{}';
    SELECT * INTO rec FROM {schema}.queues q WHERE q.name = p_queue;
    IF NOT FOUND OR (NOT rec.paused AND rec.max_running IS NULL AND rec.max_per_key IS NULL
                     AND rec.rate_starts IS NULL) THEN
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
        SELECT count(*) INTO v_running FROM {schema}.jobs j
            WHERE j.state = 'running' AND j.queue = p_queue;
        o_n := greatest(0, least(o_n, rec.max_running - v_running));
    END IF;
    IF rec.max_per_key IS NULL AND rec.rate_starts IS NULL THEN
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
    IF o_n > 0 AND rec.max_per_key IS NULL THEN
        SELECT coalesce(array_agg(s.id), '{}') INTO o_ids FROM (
            SELECT j.id FROM {schema}.jobs j WHERE j.state = 'available' AND j.queue = p_queue
            ORDER BY j.priority, j.run_at, j.id LIMIT o_n FOR UPDATE SKIP LOCKED) s;
    ELSIF o_n > 0 THEN
        v_start := v_pos;
        LOOP
            EXIT WHEN cardinality(o_ids) >= o_n;
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
            SELECT count(*) INTO v_running FROM {schema}.jobs j
                WHERE j.state = 'running' AND j.queue = p_queue
                  AND j.partition_key IS NOT NULL AND j.partition_key = v_key;
            v_room := least(rec.max_per_key - v_running, o_n - cardinality(o_ids));
            IF v_room > 0 THEN
                SELECT coalesce(array_agg(s.id), '{}') INTO v_got FROM (
                    SELECT j.id FROM {schema}.jobs j
                    WHERE j.state = 'available' AND j.queue = p_queue
                      AND j.partition_key IS NOT NULL AND j.partition_key = v_key
                    ORDER BY j.priority, j.run_at, j.id LIMIT v_room FOR UPDATE SKIP LOCKED) s;
                o_ids := o_ids || v_got;
            END IF;
            v_pos := v_key;
        END LOOP;
    END IF;
    IF rec.rate_starts IS NOT NULL THEN
        v_tokens := v_tokens - cardinality(o_ids);
    END IF;
    UPDATE {schema}.queues q SET tokens = v_tokens, refilled_at = v_at, key_cursor = v_pos
        WHERE q.name = p_queue;
    o_n := 0;
END
$$;
