-- errand schema version 6: uniqueness chosen per job. A job holds its unique key in the
-- states of its `unique_states` (a bit per state: scheduled 1, available 2, running 4,
-- retryable 8, completed 16, discarded 32, cancelled 64; the first four always), and a
-- final state only for `unique_for_ms` after it finished when that is set (the inserter
-- lets go of an expired holder). Rows written before hold in the states that are not final.
ALTER TABLE errand_jobs ADD COLUMN unique_states INTEGER NOT NULL DEFAULT 15;
ALTER TABLE errand_jobs ADD COLUMN unique_for_ms INTEGER;
DROP INDEX errand_jobs_unique;
-- The predicate is errand_core::UNIQUE_HOLDS_SQL, word for word: a lookup of the holder
-- uses this index only when it repeats it.
CREATE UNIQUE INDEX errand_jobs_unique ON errand_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND (unique_states & (CASE state WHEN 'scheduled' THEN 1 WHEN 'available' THEN 2 WHEN 'running' THEN 4 WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'discarded' THEN 32 WHEN 'cancelled' THEN 64 ELSE 0 END)) <> 0;
