-- errand schema version 9: the audit log. One row per operator action (dashboard, CLI):
-- who, what, to what, with what outcome, when (the database's clock). Read newest first.
CREATE TABLE {schema}.audit_log (
    id     bigserial   PRIMARY KEY,
    at     timestamptz NOT NULL,
    actor  text        NOT NULL,
    action text        NOT NULL,
    target text        NOT NULL,
    detail text        NOT NULL
);
