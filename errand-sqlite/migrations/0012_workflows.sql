-- errand schema version 12: workflows (issue 17; errand-core `workflow.rs`).
--
-- A workflow step waits in a state of its own, `pending`, until the steps it depends on
-- have completed. A CHECK constraint cannot be altered in place, so the table is rebuilt as
-- in version 3 (new table, copy, drop, rename), keeping every row, its id and the
-- AUTOINCREMENT counter; the copy holds the write lock (seconds per million jobs), so on a
-- large file run `errand migrate` at a quiet moment. `pending` is tested last in the CHECK:
-- SQLite evaluates it for every row an update changes, and the common states come first.
CREATE TABLE errand_jobs_v12 (
    id               INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: ids never reused after pruning
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
INSERT INTO errand_jobs_v12 (id, kind, queue, args, state, priority, attempt, max_attempts, run_at,
                             created_at, attempted_at, finalized_at, lease_expires_at, attempted_by,
                             errors, tags, unique_key, backoff, timeout_ms, result, progress,
                             unique_states, unique_for_ms, partition_key)
SELECT id, kind, queue, args, state, priority, attempt, max_attempts, run_at,
       created_at, attempted_at, finalized_at, lease_expires_at, attempted_by,
       errors, tags, unique_key, backoff, timeout_ms, result, progress,
       unique_states, unique_for_ms, partition_key
FROM errand_jobs ORDER BY id;
DELETE FROM sqlite_sequence WHERE name = 'errand_jobs_v12';
INSERT INTO sqlite_sequence (name, seq) SELECT 'errand_jobs_v12', seq FROM sqlite_sequence WHERE name = 'errand_jobs';
DROP TABLE errand_jobs;
ALTER TABLE errand_jobs_v12 RENAME TO errand_jobs;

-- Every index of version 11, as it was.
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

-- New: pending steps (counts and lists), and steps by workflow and name.
CREATE INDEX errand_jobs_pending ON errand_jobs (queue, id) WHERE state = 'pending';
CREATE UNIQUE INDEX errand_jobs_step ON errand_jobs (workflow_id, step) WHERE workflow_id IS NOT NULL;

-- Workflows, newest last by seq.
CREATE TABLE errand_workflows (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Dependency edges: releasing a parent's dependents is one range of the primary key.
CREATE TABLE errand_job_deps (
    parent_id      INTEGER NOT NULL,
    child_id       INTEGER NOT NULL,
    ignore_failure INTEGER NOT NULL DEFAULT 0,
    settled        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID;
CREATE INDEX errand_job_deps_child ON errand_job_deps (child_id, parent_id);

-- Settling dependents, in the statement that records a parent's end. Times: the parent's
-- `finalized_at` is the end's time. The triggers fire for updates that name
-- `has_dependents` in their SET list, not for every change of state: a trigger on `state`
-- is compiled into every claim and completion, and measured (100,000 jobs claimed and
-- completed in batches of 100) it made them 50-65 % slower even though its WHEN is false
-- for every plain job. So the store's rare ends — outcomes other than completion, the
-- rescuer's, hand cancels and retries, completions in the application's transaction,
-- discards of unreadable rows — write `has_dependents = has_dependents` to fire them, and
-- its outcome batches settle completions themselves (errand-sqlite `outcome.rs`). What the
-- triggers change never names `has_dependents`, so none fires another: a chain of any
-- length settles at one level (SQLite stops nested triggers at 1,000).
--
-- Completed: each dependent's count goes down by one; the dependent that reaches 0 while
-- pending becomes available (or scheduled when its run_at is later). Made available, its
-- run_at becomes the release time: it queues behind the jobs that were waiting before it,
-- and a claim that walks from its last position (Postgres) does not step over it. One writer at a time
-- on the file, so two parents completing at once settle one after the other.
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

-- Discarded or cancelled: every pending step its failure reaches through edges without
-- ignore_failure is cancelled, with the reason in its errors and `cancelled_by` naming the
-- dependency that failed (or was cancelled) before it; edges with ignore_failure out of it
-- and out of each step it cancels count as done. The whole reach is found here at once (a
-- recursive query into `errand_settling`, a scratch table only this trigger uses, one writer
-- at a time), not by this trigger firing again for each step it cancels — that would nest
-- once per step of a chain, and SQLite stops at 1,000 levels. Steps it cancels are skipped
-- by the WHEN clause below: their `cancelled_by` goes from NULL to set in the same update.
CREATE TABLE errand_settling (
    id           INTEGER PRIMARY KEY,
    parent       INTEGER NOT NULL,
    parent_step  TEXT,
    parent_state TEXT    NOT NULL,
    other        INTEGER
);
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

-- A failed job retried by hand: the steps its failure cancelled (and those they cancelled in
-- turn: the tree `cancelled_by` draws) wait again, except a step with another failed
-- dependency outside that tree, which stays cancelled — now by that dependency, whose own
-- retry revives it — with everything below it. Found at once, like the cancelling above;
-- the steps it revives are skipped by the WHEN clause (their `cancelled_by` goes from set
-- to NULL in the same update).
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
