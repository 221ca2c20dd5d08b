-- errand schema version 7: leadership leases. One row per lease (`maintenance`): the worker
-- holding it runs the scheduler, the rescuer, the pruner and the stats gauges for every
-- process on this schema; the others try to take it when it ends. Times are the database's.
CREATE TABLE {schema}.leaders (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    elected_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
