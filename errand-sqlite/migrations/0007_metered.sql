-- errand schema version 7: per-key limits and rate limits. A job may carry a partition key
-- (compared as bytes: SQLite's BINARY collation, the order the claim walks keys in); a
-- queue's record may hold a per-key limit, a rate limit with its token bucket, a rate per key
-- (each key's bucket in errand_queue_keys, absent when full), and the key its last claim
-- stopped at. Both job indexes hold only keyed jobs: a queue without keys pays nothing.
ALTER TABLE errand_jobs ADD COLUMN partition_key TEXT;
ALTER TABLE errand_queues ADD COLUMN max_per_key INTEGER CHECK (max_per_key > 0);
ALTER TABLE errand_queues ADD COLUMN rate_starts INTEGER CHECK (rate_starts > 0);
ALTER TABLE errand_queues ADD COLUMN rate_period_ms INTEGER CHECK (rate_period_ms > 0);
ALTER TABLE errand_queues ADD COLUMN tokens REAL;
ALTER TABLE errand_queues ADD COLUMN refilled_at INTEGER;
ALTER TABLE errand_queues ADD COLUMN key_cursor TEXT;
ALTER TABLE errand_queues ADD COLUMN key_rate_starts INTEGER CHECK (key_rate_starts > 0);
ALTER TABLE errand_queues ADD COLUMN key_rate_period_ms INTEGER CHECK (key_rate_period_ms > 0);
CREATE TABLE errand_queue_keys (
    queue       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    tokens      REAL    NOT NULL,
    refilled_at INTEGER NOT NULL,
    PRIMARY KEY (queue, key)
);
-- Full buckets are deleted a few at a time by the claims: found by age.
CREATE INDEX errand_queue_keys_age ON errand_queue_keys (queue, refilled_at);
CREATE INDEX errand_jobs_keyed ON errand_jobs (queue, partition_key, priority, run_at, id)
    WHERE state = 'available' AND partition_key IS NOT NULL;
CREATE INDEX errand_jobs_keyed_running ON errand_jobs (queue, partition_key)
    WHERE state = 'running' AND partition_key IS NOT NULL;
