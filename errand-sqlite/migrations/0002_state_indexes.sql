-- errand schema version 2: one small partial index per group of states instead of indexes
-- over every row, so running a job touches four index entries instead of eight
-- (errand_core::STATE_INDEX_GROUPS lists the groups; list, count and stats query each group
-- with its own index).
DROP INDEX IF EXISTS errand_jobs_state_queue;
DROP INDEX IF EXISTS errand_jobs_kind;
-- The scheduler's index also answers counts of scheduled and retryable jobs per queue.
DROP INDEX IF EXISTS errand_jobs_due;
CREATE INDEX errand_jobs_due ON errand_jobs (run_at, state, queue) WHERE state IN ('scheduled', 'retryable');
-- Lists of failed jobs (rare among millions of completed ones), per queue, newest first.
CREATE INDEX errand_jobs_dead ON errand_jobs (queue, id) WHERE state IN ('discarded', 'cancelled');
