-- errand schema version 10: the worker registry. One row per live worker process, replaced
-- by its presence heartbeat and removed when it stops; the maintenance leader removes the
-- rows of workers silent for an hour (killed without stopping).
CREATE TABLE {schema}.workers (
    id           text        PRIMARY KEY,
    host         text        NOT NULL,
    pid          bigint      NOT NULL,
    version      text        NOT NULL,
    queues       text        NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    running      bigint      NOT NULL,
    interval_ms  bigint      NOT NULL
);
