-- errand schema version 4: what a job returned (set when it completes with a value), the
-- latest progress it reported, and whether someone waits for its end in another process:
-- only then does recording the end send a NOTIFY (`Client::wait`). A constant default
-- adds the columns without rewriting the table.
ALTER TABLE {schema}.jobs
    ADD COLUMN result   jsonb,
    ADD COLUMN progress jsonb,
    ADD COLUMN awaited  boolean NOT NULL DEFAULT false;
