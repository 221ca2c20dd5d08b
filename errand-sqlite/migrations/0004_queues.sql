-- errand schema version 4: queues as stored objects. A queue gets a record the first time an
-- operator acts on it (pause, resume); a queue without one is active. The claim looks its
-- queue up by primary key: one probe per claim, whatever the number of queues.
CREATE TABLE errand_queues (
    name       TEXT    PRIMARY KEY NOT NULL,
    paused     INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
