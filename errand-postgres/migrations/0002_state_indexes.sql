-- errand schema version 2: one small partial index per group of states instead of indexes
-- over every row. A job that runs once now writes four index entries instead of eight, and
-- an insert two instead of four (errand_core::STATE_INDEX_GROUPS lists the groups; list,
-- count and stats query each group with its own index). Building the two new partial
-- indexes reads the whole table while writes to it wait (migrations run in one transaction):
-- on a table of millions of jobs, run `errand migrate` at a quiet moment.
DROP INDEX IF EXISTS {schema}.jobs_state_queue;
DROP INDEX IF EXISTS {schema}.jobs_kind;
-- The scheduler's index also answers counts of scheduled and retryable jobs per queue.
DROP INDEX IF EXISTS {schema}.jobs_due;
CREATE INDEX jobs_due ON {schema}.jobs (run_at, state, queue) WHERE state IN ('scheduled', 'retryable');
-- Lists of failed jobs (rare among millions of completed ones), per queue, newest first.
CREATE INDEX jobs_dead ON {schema}.jobs (queue, id) WHERE state IN ('discarded', 'cancelled');
