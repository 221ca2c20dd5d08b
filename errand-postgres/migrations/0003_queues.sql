-- errand schema version 3: queues as stored objects. A queue gets a record the first time an
-- operator acts on it (pause, resume); a queue without one is active. The claim looks its
-- queue up by primary key: one index probe per claim, whatever the number of queues.
CREATE TABLE {schema}.queues (
    name       text        PRIMARY KEY,
    paused     boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL
);
