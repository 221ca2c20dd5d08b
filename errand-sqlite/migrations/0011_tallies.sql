-- errand schema version 11: jobs finished per minute, by queue and final state, kept by the
-- maintenance leader's tally (read through errand_jobs_finalized, so each tally costs what
-- finished since the last); `errand_tally_mark` is where the last tally stopped.
CREATE TABLE errand_tallies (
    minute INTEGER NOT NULL,
    queue  TEXT    NOT NULL,
    state  TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (minute, queue, state)
) WITHOUT ROWID;
CREATE TABLE errand_tally_mark (
    name TEXT    PRIMARY KEY NOT NULL,
    upto INTEGER NOT NULL
) WITHOUT ROWID;
