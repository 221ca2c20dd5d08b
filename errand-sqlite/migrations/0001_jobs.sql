-- errand schema version 1: the jobs table and the indexes its hot paths use.
-- Timestamps are integer microseconds since the Unix epoch (UTC).
CREATE TABLE errand_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: ids never reused after pruning
    kind             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    args             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('scheduled','available','running','retryable','completed','discarded','cancelled')),
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

-- The claim: available jobs of one queue in (priority, run_at, id) order.
CREATE INDEX errand_jobs_claim ON errand_jobs (queue, priority, run_at, id) WHERE state = 'available';
-- The scheduler: due scheduled and retryable jobs.
CREATE INDEX errand_jobs_due ON errand_jobs (run_at) WHERE state IN ('scheduled', 'retryable');
-- The rescuer: running jobs by lease expiry.
CREATE INDEX errand_jobs_lease ON errand_jobs (lease_expires_at) WHERE state = 'running';
-- The pruner: final jobs by finalization time.
CREATE INDEX errand_jobs_finalized ON errand_jobs (finalized_at) WHERE state IN ('completed', 'discarded', 'cancelled');
-- Operators' lists and stats.
CREATE INDEX errand_jobs_state_queue ON errand_jobs (state, queue, id);
CREATE INDEX errand_jobs_kind ON errand_jobs (kind, id);
-- Uniqueness among non-final jobs.
CREATE UNIQUE INDEX errand_jobs_unique ON errand_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'running', 'retryable');
