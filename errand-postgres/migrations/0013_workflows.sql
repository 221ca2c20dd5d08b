-- errand schema version 13: workflows (issue 17; errand-core `workflow.rs`).
--
-- A workflow step waits in a state of its own, `pending`, until the steps it depends on have
-- completed. The state CHECK is replaced without a long lock (added NOT VALID, then
-- validated, which reads the table but lets writes go on).
DO $$
DECLARE c text;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
             WHERE conrelid = '{schema}.jobs'::regclass AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%state%'
    LOOP
        EXECUTE format('ALTER TABLE {schema}.jobs DROP CONSTRAINT %I', c);
    END LOOP;
END $$;
ALTER TABLE {schema}.jobs ADD CONSTRAINT jobs_state_check CHECK (state IN
    ('scheduled', 'available', 'running', 'retryable', 'completed', 'discarded', 'cancelled',
     'pending')) NOT VALID;
ALTER TABLE {schema}.jobs VALIDATE CONSTRAINT jobs_state_check;

-- The workflow and the step's name in it (NULL for a plain job); dependencies not settled
-- yet (completed, or failed on an ignore_failure edge); whether some step depends on this
-- job (false for every plain job, so recording a plain job's outcome runs no trigger code);
-- and the failed dependency whose failure cancelled this step (a retry of it revives it).
-- Columns with constant defaults: no table rewrite.
ALTER TABLE {schema}.jobs
    ADD COLUMN workflow_id    text,
    ADD COLUMN step           text,
    ADD COLUMN waiting_on     integer NOT NULL DEFAULT 0,
    ADD COLUMN has_dependents boolean NOT NULL DEFAULT false,
    ADD COLUMN cancelled_by   bigint;

CREATE INDEX jobs_pending ON {schema}.jobs (queue, id) WHERE state = 'pending';
CREATE UNIQUE INDEX jobs_step ON {schema}.jobs (workflow_id, step) WHERE workflow_id IS NOT NULL;

CREATE TABLE {schema}.workflows (
    seq        bigserial   PRIMARY KEY,
    id         text        NOT NULL UNIQUE,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL
);

-- Dependency edges: a parent's dependents are one range of the primary key.
CREATE TABLE {schema}.job_deps (
    parent_id      bigint  NOT NULL,
    child_id       bigint  NOT NULL,
    ignore_failure boolean NOT NULL DEFAULT false,
    settled        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX job_deps_child ON {schema}.job_deps (child_id, parent_id);

-- Settling dependents, in the statement that records a parent's outcome (the trigger below
-- fires only for jobs with dependents whose state changed). The parent's `finalized_at` is
-- the outcome's time.
--
-- Completed: each dependent's count goes down by one; the dependent that reaches 0 while
-- pending becomes available (or scheduled when its run_at is later). Made available, its
-- run_at becomes the release time: it queues behind the jobs that were waiting before it,
-- and a claim walking from its floor (migration 12) does not step over it. Two parents of one step
-- completing at once in two transactions serialize on the step's row lock, and the second
-- recomputes from the row the first committed: released exactly once.
--
-- Discarded or cancelled: every pending step its failure reaches through edges without
-- ignore_failure is cancelled, with the reason in its errors and `cancelled_by` naming the
-- dependency that failed before it; edges with ignore_failure out of it and out of each step
-- it cancels count as done. The whole reach is found at once (a recursive query), so a chain
-- of any length settles at one trigger level; the steps it cancels are skipped by the
-- trigger's WHEN (their `cancelled_by` goes from NULL to set in the same update).
--
-- A failed job retried by hand: the steps its failure cancelled (and those they cancelled
-- in turn: the tree `cancelled_by` draws) wait again, except a step with another failed
-- dependency outside that tree, which stays cancelled — now by that dependency — with
-- everything below it. The steps it revives are skipped by the WHEN likewise.
--
-- Wake-ups go out as the store's own NOTIFYs do (delivered at commit): the queue of each
-- step made available, '' (the scheduler) for one made scheduled, "ended" for a cancelled
-- step someone waits on.
CREATE FUNCTION {schema}.settle_dependents() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    chan text := 'errand_' || TG_TABLE_SCHEMA;
    doomed bigint[] := '{}';
    r_ids bigint[];
    r_parents bigint[];
    r_steps text[];
    r_states text[];
    tree_ids bigint[];
    tree_parents bigint[];
    blocked_ids bigint[];
    blocked_by bigint[];
    blocked_all bigint[];
    n bigint;
BEGIN
    IF NEW.state IN ('completed', 'discarded', 'cancelled')
       AND OLD.state NOT IN ('completed', 'discarded', 'cancelled') THEN
        IF NEW.state <> 'completed' THEN
            WITH RECURSIVE reach(id, step, parent, parent_step, parent_state) AS (
                SELECT c.id, c.step, NEW.id, NEW.step, NEW.state
                FROM {schema}.job_deps e JOIN {schema}.jobs c ON c.id = e.child_id
                WHERE e.parent_id = NEW.id AND NOT e.settled AND NOT e.ignore_failure
                  AND c.state = 'pending'
                UNION
                SELECT c.id, c.step, x.id, x.step, 'cancelled'
                FROM reach x JOIN {schema}.job_deps e ON e.parent_id = x.id
                JOIN {schema}.jobs c ON c.id = e.child_id
                WHERE NOT e.settled AND NOT e.ignore_failure AND c.state = 'pending'
            ), one AS (
                SELECT DISTINCT ON (id) id, parent, parent_step, parent_state
                FROM reach ORDER BY id, parent
            )
            SELECT coalesce(array_agg(id ORDER BY id), '{}'),
                   coalesce(array_agg(parent ORDER BY id), '{}'),
                   coalesce(array_agg(parent_step ORDER BY id), '{}'),
                   coalesce(array_agg(parent_state ORDER BY id), '{}')
            INTO r_ids, r_parents, r_steps, r_states FROM one;
            -- Locked in id order before any is written, and cancelled only if still pending:
            -- two failures reaching the same steps at once (hand cancels, the rescuer: paths
            -- without an outcome batch's lock of the steps) wait for each other instead of
            -- deadlocking, and the second finds them cancelled by the first, not to be
            -- cancelled again (a step cancelled twice named the wrong failure to retry).
            PERFORM 1 FROM {schema}.jobs WHERE id = ANY(r_ids) ORDER BY id FOR UPDATE;
            WITH one AS (
                SELECT * FROM unnest(r_ids, r_parents, r_steps, r_states)
                  AS o(id, parent, parent_step, parent_state)
            ), cancelled AS (
                UPDATE {schema}.jobs j SET
                    state = 'cancelled',
                    cancelled_by = o.parent,
                    finalized_at = NEW.finalized_at,
                    errors = j.errors || jsonb_build_array(jsonb_build_object(
                        'attempt', j.attempt,
                        'at', to_char(NEW.finalized_at AT TIME ZONE 'UTC',
                                      'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                        'message', format('cancelled because its dependency ''%s'' (job %s) '
                                          'ended %s; retry job %s to run it, or depend on it '
                                          'with ignore_failure to run anyway',
                                          coalesce(o.parent_step, ''), o.parent,
                                          o.parent_state, o.parent)))
                FROM one o WHERE j.id = o.id AND j.state = 'pending'
                RETURNING j.id, j.awaited
            )
            SELECT coalesce(array_agg(id), '{}'), count(*) FILTER (WHERE awaited)
            INTO doomed, n FROM cancelled;
            IF n > 0 THEN
                PERFORM pg_notify(chan, chr(1) || 'ended');
            END IF;
        END IF;
        -- The edges this end settles: all of its own when it completed; on a failure, those
        -- with ignore_failure out of it and out of each step it cancelled (which are all
        -- `cancelled`, and `doomed` is empty after a completion). One index range each. The
        -- steps they count down are locked in id order first, as above.
        PERFORM 1 FROM {schema}.jobs
        WHERE id = ANY(ARRAY(SELECT e.child_id FROM {schema}.job_deps e
                             WHERE e.parent_id = ANY(NEW.id || doomed) AND NOT e.settled
                               AND (NEW.state = 'completed' OR e.ignore_failure)))
        ORDER BY id FOR UPDATE;
        WITH s AS (
            UPDATE {schema}.job_deps e SET settled = true
            WHERE e.parent_id = ANY(NEW.id || doomed) AND NOT e.settled
              AND (NEW.state = 'completed' OR e.ignore_failure)
            RETURNING e.child_id
        ), k AS (
            SELECT child_id, count(*) AS k FROM s GROUP BY child_id
        ), c AS (
            UPDATE {schema}.jobs j SET
                waiting_on = j.waiting_on - k.k,
                state = CASE WHEN j.state = 'pending' AND j.waiting_on = k.k
                             THEN CASE WHEN j.run_at > NEW.finalized_at THEN 'scheduled'
                                       ELSE 'available' END
                             ELSE j.state END,
                run_at = CASE WHEN j.state = 'pending' AND j.waiting_on = k.k
                              THEN greatest(j.run_at, NEW.finalized_at) ELSE j.run_at END
            FROM k WHERE j.id = k.child_id
            RETURNING j.queue, j.state
        )
        SELECT count(pg_notify(chan, q)) INTO n FROM (
            SELECT DISTINCT CASE WHEN state = 'available' THEN queue ELSE '' END AS q
            FROM c WHERE state IN ('available', 'scheduled')
        ) w;
    ELSIF OLD.state IN ('discarded', 'cancelled')
          AND NEW.state NOT IN ('completed', 'discarded', 'cancelled') THEN
        WITH RECURSIVE tree(id, parent) AS (
            SELECT c.id, NEW.id FROM {schema}.job_deps e JOIN {schema}.jobs c ON c.id = e.child_id
            WHERE e.parent_id = NEW.id AND c.state = 'cancelled' AND c.cancelled_by = NEW.id
            UNION
            SELECT c.id, x.id FROM tree x JOIN {schema}.job_deps e ON e.parent_id = x.id
            JOIN {schema}.jobs c ON c.id = e.child_id
            WHERE c.state = 'cancelled' AND c.cancelled_by = x.id
        )
        SELECT coalesce(array_agg(id), '{}'), coalesce(array_agg(parent), '{}')
        INTO tree_ids, tree_parents FROM tree;
        IF cardinality(tree_ids) = 0 THEN
            RETURN NULL;
        END IF;
        -- The tree locked in id order, as the cascade locks its reach. Another failed
        -- dependency is locked as it is found (`FOR SHARE`): one being retried at this
        -- moment is waited for and read again, so a step is not left cancelled by a
        -- dependency whose own retry, reading the tree before this one's commit, did not
        -- see the step as its to revive.
        PERFORM 1 FROM {schema}.jobs WHERE id = ANY(tree_ids) ORDER BY id FOR UPDATE;
        SELECT coalesce(array_agg(t.id), '{}'), coalesce(array_agg(o.other), '{}')
        INTO blocked_ids, blocked_by
        FROM unnest(tree_ids) AS t(id)
        CROSS JOIN LATERAL (
            SELECT p.id AS other FROM {schema}.job_deps e JOIN {schema}.jobs p ON p.id = e.parent_id
            WHERE e.child_id = t.id AND NOT e.settled AND NOT e.ignore_failure
              AND p.has_dependents AND p.state IN ('discarded', 'cancelled') AND p.id <> NEW.id
              AND p.id <> ALL(tree_ids)
            LIMIT 1
            FOR SHARE OF p
        ) o;
        WITH RECURSIVE t AS (
            SELECT * FROM unnest(tree_ids, tree_parents) AS t(id, parent)
        ), below(id) AS (
            SELECT unnest(blocked_ids)
            UNION
            SELECT t.id FROM below b JOIN t ON t.parent = b.id
        )
        SELECT coalesce(array_agg(id), '{}') INTO blocked_all FROM below;
        UPDATE {schema}.jobs j SET cancelled_by = x.other
        FROM unnest(blocked_ids, blocked_by) AS x(id, other)
        WHERE j.id = x.id AND j.state = 'cancelled';
        UPDATE {schema}.jobs j SET state = 'pending', cancelled_by = NULL, finalized_at = NULL
        WHERE j.id = ANY(tree_ids) AND j.id <> ALL(blocked_all) AND j.state = 'cancelled';
    END IF;
    RETURN NULL;
END
$fn$;

-- The store's outcome batches settle their completions themselves, aggregated over the
-- batch (errand-postgres `Sql::finish`: at 100 completions of parents of one step per batch,
-- a row trigger each cost 20 ms), and clear `has_dependents` as they do, so this trigger
-- skips them; it serves every other end (failures, the rescuer, hand cancels and retries,
-- completions in the application's transaction).
CREATE TRIGGER jobs_settle AFTER UPDATE OF state ON {schema}.jobs FOR EACH ROW
WHEN (NEW.has_dependents AND OLD.state IS DISTINCT FROM NEW.state
      AND (NEW.state IN ('completed', 'discarded', 'cancelled')
           OR OLD.state IN ('discarded', 'cancelled'))
      AND NOT (OLD.cancelled_by IS NULL AND NEW.cancelled_by IS NOT NULL)
      AND NOT (OLD.cancelled_by IS NOT NULL AND NEW.cancelled_by IS NULL))
EXECUTE FUNCTION {schema}.settle_dependents();
