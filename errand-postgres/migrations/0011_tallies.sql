-- errand schema version 11: jobs finished per minute, by queue and final state, kept by the
-- maintenance leader's tally (read through jobs_finalized, so each tally costs what finished
-- since the last); `tally_mark` is where the last tally stopped. Dashboards chart them.
CREATE TABLE {schema}.tallies (
    minute timestamptz NOT NULL,
    queue  text        NOT NULL,
    state  text        NOT NULL,
    n      bigint      NOT NULL,
    PRIMARY KEY (minute, queue, state)
);
CREATE TABLE {schema}.tally_mark (
    name text        PRIMARY KEY,
    upto timestamptz NOT NULL
);
