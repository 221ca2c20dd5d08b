-- errand schema version 9: the audit log. One row per operator action (dashboard, CLI):
-- who, what, to what, with what outcome, when (microseconds since the epoch). Read newest
-- first by id.
CREATE TABLE errand_audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL,
    detail TEXT    NOT NULL
);
