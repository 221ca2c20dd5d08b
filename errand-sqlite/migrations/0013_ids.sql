-- errand schema version 13: job ids without AUTOINCREMENT.
--
-- AUTOINCREMENT keeps ids from being reused once the newest jobs are deleted or pruned, but
-- it writes its counter (a page of `sqlite_sequence`) in every transaction that inserts: a
-- fifth to a quarter of a single enqueue (Python's sqlite3 on this schema's row, 20,000
-- single inserts: 44–47 µs each with it, 33–39 without). The same promise is kept here
-- without a write per insert: `errand_id_floor` holds the highest id ever deleted as the
-- newest job (raised by a trigger on delete, which only deletes compile), and an insert takes `floor + 1` as its
-- id when no job above the floor is left, otherwise SQLite's own `max(id) + 1`
-- (errand-sqlite `insert.rs`, `FIRST_ID`). The table is rebuilt as in versions 3 and 12
-- (new table, copy, drop, rename; the copy holds the write lock, seconds per million jobs:
-- on a large file run `errand migrate` at a quiet moment).
CREATE TABLE errand_jobs_v13 (
    id               INTEGER PRIMARY KEY, -- never reused: see errand_id_floor below
    kind             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    args             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state = 'scheduled' OR state = 'available' OR state = 'running'
                                             OR state = 'retryable' OR state = 'completed'
                                             OR state = 'discarded' OR state = 'cancelled'
                                             OR state = 'pending'),
    priority         INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts > 0),
    run_at           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    attempted_at     INTEGER,
    finalized_at     INTEGER,
    lease_expires_at INTEGER,
    attempted_by     TEXT,
    errors           TEXT    NOT NULL DEFAULT '[]',
    tags             TEXT    NOT NULL DEFAULT '[]',
    unique_key       TEXT,
    backoff          TEXT,
    timeout_ms       INTEGER,
    result           TEXT,
    progress         TEXT,
    unique_states    INTEGER NOT NULL DEFAULT 15,
    unique_for_ms    INTEGER,
    partition_key    TEXT,
    -- The workflow and the step's name in it (NULL for a plain job).
    workflow_id      TEXT,
    step             TEXT,
    -- Dependencies not settled yet (completed, or failed on an ignore_failure edge).
    waiting_on       INTEGER NOT NULL DEFAULT 0,
    -- Whether some step depends on this job: 0 for every plain job, so recording a plain
    -- job's outcome runs none of the triggers below.
    has_dependents   INTEGER NOT NULL DEFAULT 0,
    -- The failed dependency whose failure cancelled this step (a retry of it revives it).
    cancelled_by     INTEGER
);
INSERT INTO errand_jobs_v13 (id, kind, queue, args, state, priority, attempt, max_attempts, run_at,
       created_at, attempted_at, finalized_at, lease_expires_at, attempted_by,
       errors, tags, unique_key, backoff, timeout_ms, result, progress,
       unique_states, unique_for_ms, partition_key, workflow_id, step, waiting_on,
       has_dependents, cancelled_by)
SELECT id, kind, queue, args, state, priority, attempt, max_attempts, run_at,
       created_at, attempted_at, finalized_at, lease_expires_at, attempted_by,
       errors, tags, unique_key, backoff, timeout_ms, result, progress,
       unique_states, unique_for_ms, partition_key, workflow_id, step, waiting_on,
       has_dependents, cancelled_by
FROM errand_jobs ORDER BY id;
CREATE TABLE errand_id_floor (n INTEGER NOT NULL);
INSERT INTO errand_id_floor (n)
SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'errand_jobs'), 0),
           coalesce((SELECT max(id) FROM errand_jobs), 0));
DROP TABLE errand_jobs;
DELETE FROM sqlite_sequence WHERE name = 'errand_jobs';
ALTER TABLE errand_jobs_v13 RENAME TO errand_jobs;

-- Every index of version 12, as it was.
CREATE INDEX errand_jobs_claim ON errand_jobs (queue, priority, run_at, id) WHERE state = 'available';
CREATE INDEX errand_jobs_lease ON errand_jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX errand_jobs_due ON errand_jobs (run_at, state, queue)
    WHERE (state = 'scheduled' OR state = 'retryable');
CREATE INDEX errand_jobs_dead ON errand_jobs (queue, id)
    WHERE (state = 'discarded' OR state = 'cancelled');
CREATE INDEX errand_jobs_finalized ON errand_jobs (finalized_at)
    WHERE (state = 'completed' OR state = 'discarded' OR state = 'cancelled');
CREATE UNIQUE INDEX errand_jobs_unique ON errand_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND (unique_states & (CASE state WHEN 'scheduled' THEN 1 WHEN 'available' THEN 2 WHEN 'running' THEN 4 WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'discarded' THEN 32 WHEN 'cancelled' THEN 64 ELSE 0 END)) <> 0;
CREATE INDEX errand_jobs_keyed ON errand_jobs (queue, partition_key, priority, run_at, id)
    WHERE state = 'available' AND partition_key IS NOT NULL;
CREATE INDEX errand_jobs_keyed_running ON errand_jobs (queue, partition_key)
    WHERE state = 'running' AND partition_key IS NOT NULL;
CREATE INDEX errand_jobs_pending ON errand_jobs (queue, id) WHERE state = 'pending';
CREATE UNIQUE INDEX errand_jobs_step ON errand_jobs (workflow_id, step) WHERE workflow_id IS NOT NULL;

-- Deleting the newest job raises the floor to its id: no later insert takes it. Older jobs
-- (what the pruner deletes) leave it alone, a seek to the table's last row each.
CREATE TRIGGER errand_jobs_id_floor BEFORE DELETE ON errand_jobs
WHEN OLD.id >= (SELECT max(id) FROM errand_jobs)
BEGIN
    UPDATE errand_id_floor SET n = max(n, OLD.id);
END;

-- Version 12's triggers, as they were (dropped with the old table).
CREATE TRIGGER errand_jobs_settle_completed AFTER UPDATE OF has_dependents ON errand_jobs
WHEN NEW.has_dependents = 1 AND NEW.state = 'completed'
     AND OLD.state <> 'completed' AND OLD.state <> 'discarded' AND OLD.state <> 'cancelled'
BEGIN
    UPDATE errand_jobs SET
        waiting_on = waiting_on - 1,
        state = CASE WHEN state = 'pending' AND waiting_on = 1
                     THEN CASE WHEN run_at > NEW.finalized_at THEN 'scheduled' ELSE 'available' END
                     ELSE state END,
        run_at = CASE WHEN state = 'pending' AND waiting_on = 1 AND run_at < NEW.finalized_at
                      THEN NEW.finalized_at ELSE run_at END
    WHERE id IN (SELECT child_id FROM errand_job_deps WHERE parent_id = NEW.id AND settled = 0);
    UPDATE errand_job_deps SET settled = 1 WHERE parent_id = NEW.id AND settled = 0;
END;

CREATE TRIGGER errand_jobs_settle_failed AFTER UPDATE OF has_dependents ON errand_jobs
WHEN NEW.has_dependents = 1 AND (NEW.state = 'discarded' OR NEW.state = 'cancelled')
     AND OLD.state <> 'completed' AND OLD.state <> 'discarded' AND OLD.state <> 'cancelled'
     AND NOT (OLD.cancelled_by IS NULL AND NEW.cancelled_by IS NOT NULL)
BEGIN
    DELETE FROM errand_settling;
    INSERT INTO errand_settling (id, parent, parent_step, parent_state)
    SELECT id, parent, parent_step, parent_state FROM (
        WITH RECURSIVE doomed(id, step, parent, parent_step, parent_state) AS (
            SELECT c.id, c.step, NEW.id, NEW.step, NEW.state
            FROM errand_job_deps e JOIN errand_jobs c ON c.id = e.child_id
            WHERE e.parent_id = NEW.id AND e.settled = 0 AND e.ignore_failure = 0
              AND c.state = 'pending'
            UNION
            SELECT c.id, c.step, x.id, x.step, 'cancelled'
            FROM doomed x JOIN errand_job_deps e ON e.parent_id = x.id
            JOIN errand_jobs c ON c.id = e.child_id
            WHERE e.settled = 0 AND e.ignore_failure = 0 AND c.state = 'pending'
        )
        SELECT id, parent, parent_step, parent_state FROM doomed
    ) WHERE true
    ON CONFLICT (id) DO NOTHING;
    UPDATE errand_jobs SET
        waiting_on = waiting_on - n.k,
        state = CASE WHEN state = 'pending' AND waiting_on = n.k
                     THEN CASE WHEN run_at > NEW.finalized_at THEN 'scheduled' ELSE 'available' END
                     ELSE state END,
        run_at = CASE WHEN state = 'pending' AND waiting_on = n.k AND run_at < NEW.finalized_at
                      THEN NEW.finalized_at ELSE run_at END
    FROM (SELECT e.child_id AS id, count(*) AS k FROM errand_job_deps e
          WHERE e.settled = 0 AND e.ignore_failure = 1
            AND (e.parent_id = NEW.id OR e.parent_id IN (SELECT id FROM errand_settling))
          GROUP BY e.child_id) AS n
    WHERE errand_jobs.id = n.id;
    UPDATE errand_job_deps SET settled = 1
    WHERE settled = 0 AND ignore_failure = 1
      AND (parent_id = NEW.id OR parent_id IN (SELECT id FROM errand_settling));
    UPDATE errand_jobs SET
        state = 'cancelled',
        cancelled_by = s.parent,
        finalized_at = NEW.finalized_at,
        errors = json_insert(errors, '$[#]', json_object(
            'attempt', attempt,
            'at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.finalized_at / 1000000.0, 'unixepoch'),
            'message', 'cancelled because its dependency ''' || coalesce(s.parent_step, '')
                       || ''' (job ' || s.parent || ') ended ' || s.parent_state
                       || '; retry job ' || s.parent
                       || ' to run it, or depend on it with ignore_failure to run anyway'))
    FROM errand_settling s
    WHERE errand_jobs.id = s.id;
    DELETE FROM errand_settling;
END;

CREATE TRIGGER errand_jobs_revive AFTER UPDATE OF has_dependents ON errand_jobs
WHEN NEW.has_dependents = 1 AND (OLD.state = 'discarded' OR OLD.state = 'cancelled')
     AND NEW.state <> 'completed' AND NEW.state <> 'discarded' AND NEW.state <> 'cancelled'
     AND NOT (OLD.cancelled_by IS NOT NULL AND NEW.cancelled_by IS NULL)
BEGIN
    DELETE FROM errand_settling;
    INSERT INTO errand_settling (id, parent, parent_state)
    SELECT id, parent, 'revive' FROM (
        WITH RECURSIVE tree(id, parent) AS (
            SELECT c.id, NEW.id FROM errand_job_deps e JOIN errand_jobs c ON c.id = e.child_id
            WHERE e.parent_id = NEW.id AND c.state = 'cancelled' AND c.cancelled_by = NEW.id
            UNION
            SELECT c.id, x.id FROM tree x JOIN errand_job_deps e ON e.parent_id = x.id
            JOIN errand_jobs c ON c.id = e.child_id
            WHERE c.state = 'cancelled' AND c.cancelled_by = x.id
        )
        SELECT id, parent FROM tree
    ) WHERE true
    ON CONFLICT (id) DO NOTHING;
    UPDATE errand_settling SET other = (
        SELECT p.id FROM errand_job_deps e JOIN errand_jobs p ON p.id = e.parent_id
        WHERE e.child_id = errand_settling.id AND e.settled = 0 AND e.ignore_failure = 0
          AND p.has_dependents <> 0
          AND (p.state = 'discarded' OR p.state = 'cancelled') AND p.id <> NEW.id
          AND p.id NOT IN (SELECT id FROM errand_settling)
        LIMIT 1);
    UPDATE errand_settling SET parent_state = 'blocked' WHERE id IN (
        WITH RECURSIVE below(id) AS (
            SELECT id FROM errand_settling WHERE other IS NOT NULL
            UNION
            SELECT s.id FROM below b JOIN errand_settling s ON s.parent = b.id
        )
        SELECT id FROM below);
    UPDATE errand_jobs SET cancelled_by = s.other
    FROM errand_settling s WHERE errand_jobs.id = s.id AND s.other IS NOT NULL;
    UPDATE errand_jobs SET state = 'pending', cancelled_by = NULL, finalized_at = NULL
    FROM errand_settling s WHERE errand_jobs.id = s.id AND s.parent_state = 'revive';
    DELETE FROM errand_settling;
END;
