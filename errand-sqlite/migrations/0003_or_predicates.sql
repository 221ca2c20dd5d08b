-- errand schema version 3: state predicates as OR chains instead of IN lists.
--
-- SQLite evaluates the CHECK constraint and every partial index predicate over `state` for
-- each row a claim or an outcome changes, and an `IN (…)` list there costs several times an
-- equivalent chain of `=` tests: with OR chains a claimed and completed job costs ~40 % less
-- (docs/benchmarks.md). The queries repeat each index's predicate exactly (SQLite matches a
-- partial index by the text of its predicate; errand_core::state_predicates writes them).
--
-- A CHECK constraint cannot be altered in place: the table is rebuilt (SQLite's documented
-- procedure: new table, copy, drop, rename), keeping every row, its id and the AUTOINCREMENT
-- counter. The copy holds the write lock: 2.7 s for a file of 1,000,000 jobs (127 MB) on the
-- development machine, so on a large file run `errand migrate` at a quiet moment.
CREATE TABLE errand_jobs_v3 (
    id               INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: ids never reused after pruning
    kind             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    args             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state = 'scheduled' OR state = 'available' OR state = 'running'
                                             OR state = 'retryable' OR state = 'completed'
                                             OR state = 'discarded' OR state = 'cancelled'),
    priority         INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts > 0),
    run_at           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    attempted_at     INTEGER,
    finalized_at     INTEGER,
    lease_expires_at INTEGER,
    attempted_by     TEXT,
    errors           TEXT    NOT NULL DEFAULT '[]',
    tags             TEXT    NOT NULL DEFAULT '[]',
    unique_key       TEXT,
    backoff          TEXT,
    timeout_ms       INTEGER
);
INSERT INTO errand_jobs_v3 (id, kind, queue, args, state, priority, attempt, max_attempts, run_at,
                            created_at, attempted_at, finalized_at, lease_expires_at, attempted_by,
                            errors, tags, unique_key, backoff, timeout_ms)
SELECT id, kind, queue, args, state, priority, attempt, max_attempts, run_at,
       created_at, attempted_at, finalized_at, lease_expires_at, attempted_by,
       errors, tags, unique_key, backoff, timeout_ms
FROM errand_jobs ORDER BY id;
-- The counter, not the highest id left: ids of pruned jobs are never handed out again.
DELETE FROM sqlite_sequence WHERE name = 'errand_jobs_v3';
INSERT INTO sqlite_sequence (name, seq) SELECT 'errand_jobs_v3', seq FROM sqlite_sequence WHERE name = 'errand_jobs';
DROP TABLE errand_jobs;
ALTER TABLE errand_jobs_v3 RENAME TO errand_jobs;

-- The indexes of version 2, with OR-chain predicates (errand_core::STATE_INDEX_GROUPS).
CREATE INDEX errand_jobs_claim ON errand_jobs (queue, priority, run_at, id) WHERE state = 'available';
CREATE INDEX errand_jobs_lease ON errand_jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX errand_jobs_due ON errand_jobs (run_at, state, queue)
    WHERE (state = 'scheduled' OR state = 'retryable');
CREATE INDEX errand_jobs_dead ON errand_jobs (queue, id)
    WHERE (state = 'discarded' OR state = 'cancelled');
CREATE INDEX errand_jobs_finalized ON errand_jobs (finalized_at)
    WHERE (state = 'completed' OR state = 'discarded' OR state = 'cancelled');
CREATE UNIQUE INDEX errand_jobs_unique ON errand_jobs (unique_key)
    WHERE unique_key IS NOT NULL
      AND (state = 'scheduled' OR state = 'available' OR state = 'running' OR state = 'retryable');
