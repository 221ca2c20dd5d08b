-- errand schema version 3: queues as stored objects. A queue gets a record the first time an
-- operator acts on it (pause, resume, a limit); a queue without one is active and unlimited.
CREATE TABLE {schema}.queues (
    name        text        PRIMARY KEY,
    paused      boolean     NOT NULL DEFAULT false,
    -- At most this many of the queue's jobs running at once across every worker.
    max_running integer     CHECK (max_running > 0),
    updated_at  timestamptz NOT NULL
);

-- How many jobs a claim of `queue` may take, wanting `want`: 0 when paused; under a limit,
-- the free slots. A limited queue's record is locked first, so claims of it take turns, and
-- the running jobs are counted after the lock is held: a PL/pgSQL statement takes a fresh
-- snapshot, so the count sees every claim committed before it. Two claimers can never both
-- take the last slot. An unlimited queue costs one primary-key probe and takes no lock.
CREATE FUNCTION {schema}.claimable(queue text, want bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    rec {schema}.queues%ROWTYPE;
    running bigint;
BEGIN
    SELECT * INTO rec FROM {schema}.queues q WHERE q.name = queue;
    IF NOT FOUND THEN
        RETURN want;
    END IF;
    IF rec.paused THEN
        RETURN 0;
    END IF;
    IF rec.max_running IS NULL THEN
        RETURN want;
    END IF;
    PERFORM 1 FROM {schema}.queues q WHERE q.name = queue FOR UPDATE;
    SELECT count(*) INTO running FROM {schema}.jobs j
        WHERE j.state = 'running' AND j.queue = claimable.queue;
    SELECT q.paused, q.max_running INTO rec.paused, rec.max_running
        FROM {schema}.queues q WHERE q.name = queue;
    IF rec.paused THEN
        RETURN 0;
    END IF;
    RETURN greatest(0, least(want, coalesce(rec.max_running::bigint, want) - running));
END
$$;
