-- errand schema version 10: the worker registry. One row per live worker process, replaced
-- by its presence heartbeat and removed when it stops; the maintenance leader removes the
-- rows of workers silent for an hour (killed without stopping). Times in microseconds.
CREATE TABLE errand_workers (
    id           TEXT    PRIMARY KEY NOT NULL,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT    NOT NULL,
    queues       TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    running      INTEGER NOT NULL,
    interval_ms  INTEGER NOT NULL
) WITHOUT ROWID;
