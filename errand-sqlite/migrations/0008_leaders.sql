-- errand schema version 8: leadership leases. One row per lease (`maintenance`): the worker
-- holding it runs the scheduler, the rescuer, the pruner and the stats gauges for every
-- process on this file; the others renew nothing and try to take it when it ends.
CREATE TABLE errand_leaders (
    name       TEXT    PRIMARY KEY NOT NULL,
    holder     TEXT    NOT NULL,
    elected_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
