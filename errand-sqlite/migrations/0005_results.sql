-- errand schema version 5: what a job returned (JSON text, set when it completes with a
-- value) and the latest progress it reported (JSON: attempt, percent, message, at).
ALTER TABLE errand_jobs ADD COLUMN result TEXT;
ALTER TABLE errand_jobs ADD COLUMN progress TEXT;
