-- errand schema version 1 for PostgreSQL. "{schema}" is replaced by the quoted schema name.
CREATE TABLE {schema}.jobs (
    id               bigserial   PRIMARY KEY,
    kind             text        NOT NULL,
    queue            text        NOT NULL,
    args             jsonb       NOT NULL,
    state            text        NOT NULL CHECK (state IN ('scheduled','available','running','retryable','completed','discarded','cancelled')),
    priority         smallint    NOT NULL DEFAULT 0,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL CHECK (max_attempts > 0),
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    attempted_at     timestamptz,
    finalized_at     timestamptz,
    lease_expires_at timestamptz,
    attempted_by     text,
    errors           jsonb       NOT NULL DEFAULT '[]',
    tags             jsonb       NOT NULL DEFAULT '[]',
    unique_key       text,
    backoff          jsonb,
    timeout_ms       bigint
);

-- The claim: available jobs of one queue in (priority, run_at, id) order. Partial, so it
-- holds only the jobs waiting to run, however many final jobs the table keeps.
CREATE INDEX jobs_claim ON {schema}.jobs (queue, priority, run_at, id) WHERE state = 'available';
-- The scheduler: due scheduled and retryable jobs.
CREATE INDEX jobs_due ON {schema}.jobs (run_at) WHERE state IN ('scheduled', 'retryable');
-- The rescuer: running jobs by lease expiry.
CREATE INDEX jobs_lease ON {schema}.jobs (lease_expires_at) WHERE state = 'running';
-- The pruner: final jobs by finalization time.
CREATE INDEX jobs_finalized ON {schema}.jobs (finalized_at) WHERE state IN ('completed', 'discarded', 'cancelled');
-- Operators' lists and stats (the dashboard's lists page by id within a state or kind).
CREATE INDEX jobs_state_queue ON {schema}.jobs (state, queue, id);
CREATE INDEX jobs_kind ON {schema}.jobs (kind, id);
-- Uniqueness among non-final jobs: enforced by the database, never check-then-insert.
CREATE UNIQUE INDEX jobs_unique ON {schema}.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'running', 'retryable');
