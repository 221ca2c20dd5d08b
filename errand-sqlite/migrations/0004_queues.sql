-- errand schema version 4: queues as stored objects. A queue gets a record the first time an
-- operator acts on it (pause, resume, a limit); a queue without one is active and unlimited.
-- The claim looks its queue up by primary key: one probe per claim, whatever the number of
-- queues. SQLite's single writer serializes claims, so a limit needs no lock of its own.
CREATE TABLE errand_queues (
    name        TEXT    PRIMARY KEY NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- At most this many of the queue's jobs running at once across every worker.
    max_running INTEGER CHECK (max_running > 0),
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
