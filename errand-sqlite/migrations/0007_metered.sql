-- errand schema version 7: per-key limits and rate limits. A job may carry a partition key
-- (compared as bytes: SQLite's BINARY collation, the order the claim walks keys in); a
-- queue's record may hold a per-key limit, a rate limit with its token bucket, and the key its
-- last claim stopped at. Both indexes hold only keyed jobs: a queue without keys pays nothing.
ALTER TABLE errand_jobs ADD COLUMN partition_key TEXT;
ALTER TABLE errand_queues ADD COLUMN max_per_key INTEGER CHECK (max_per_key > 0);
ALTER TABLE errand_queues ADD COLUMN rate_starts INTEGER CHECK (rate_starts > 0);
ALTER TABLE errand_queues ADD COLUMN rate_period_ms INTEGER CHECK (rate_period_ms > 0);
ALTER TABLE errand_queues ADD COLUMN tokens REAL;
ALTER TABLE errand_queues ADD COLUMN refilled_at INTEGER;
ALTER TABLE errand_queues ADD COLUMN key_cursor TEXT;
CREATE INDEX errand_jobs_keyed ON errand_jobs (queue, partition_key, priority, run_at, id)
    WHERE state = 'available' AND partition_key IS NOT NULL;
CREATE INDEX errand_jobs_keyed_running ON errand_jobs (queue, partition_key)
    WHERE state = 'running' AND partition_key IS NOT NULL;
