//! Every statement of the store, formatted once per schema.

use errand_core::UNIQUE_HOLDS_SQL;

use crate::row::COLUMNS;

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("errand types serialize to JSON")
}

/// The longest uniqueness period (100 years, `errand_core::MAX_DELAY`) in ms: a row holding
/// a longer one (written by hand) cannot overflow an interval.
const MAX_PERIOD_MS: u128 = errand_core::MAX_DELAY.as_millis();

const NON_FINAL: &str = "('pending', 'scheduled', 'available', 'running', 'retryable')";
const FINAL: &str = "('completed', 'discarded', 'cancelled')";

#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) insert: String,
    pub(crate) insert_one: String,
    pub(crate) insert_plain: String,
    pub(crate) insert_shared: String,
    pub(crate) find_unique: String,
    pub(crate) release_unique: String,
    pub(crate) release_unique_of: String,
    pub(crate) claim: String,
    pub(crate) claim_from: String,
    pub(crate) copy_ids: String,
    pub(crate) copy_in: String,
    pub(crate) copy_in_lean: String,
    pub(crate) notify_each: String,
    pub(crate) claim_metered: String,
    pub(crate) is_metered: String,
    pub(crate) finish: String,
    /// [`Sql::finish`] for a process that has claimed no workflow step: completions leave
    /// settling to migration 13's trigger (which finds none to settle), and the statement
    /// skips the steps' lock, count and release (plain batches: 1–2 ms of ~20 planned and
    /// run, measured with `pg_stat_statements`).
    pub(crate) finish_lean: String,
    /// [`Sql::finish_lean`] for a batch of completions only (most batches): four arrays
    /// instead of eight, and one row back (the ids applied) instead of one per job.
    pub(crate) finish_completions: String,
    pub(crate) extend: String,
    pub(crate) release: String,
    pub(crate) rescue: String,
    pub(crate) promote: String,
    pub(crate) cancel: String,
    pub(crate) delete: String,
    /// `delete`'s first statement: a step not ended is cancelled (the trigger settles it).
    pub(crate) delete_ends_step: String,
    /// `delete`'s second: the job's edges, unsettled ones out of it uncounted.
    pub(crate) delete_edges: String,
    pub(crate) retry: String,
    pub(crate) get: String,
    pub(crate) prune: String,
    pub(crate) complete_in_tx: String,
    pub(crate) quarantine: String,
    pub(crate) set_progress: String,
    pub(crate) watch_end: String,
    pub(crate) set_paused: String,
    pub(crate) set_limits: String,
    pub(crate) queues: String,
    pub(crate) oldest_available: String,
    pub(crate) with_available: String,
    pub(crate) table: String,
    pub(crate) lead: String,
    pub(crate) resign: String,
    pub(crate) leader: String,
    pub(crate) audit_insert: String,
    pub(crate) audit_log: String,
    pub(crate) register_worker: String,
    pub(crate) deregister_worker: String,
    pub(crate) workers: String,
    pub(crate) forget_workers: String,
    pub(crate) tally_mark_init: String,
    pub(crate) tally_mark_read: String,
    pub(crate) tally_any: String,
    pub(crate) tally_mark_lock: String,
    pub(crate) tally_add: String,
    pub(crate) tally_mark_move: String,
    pub(crate) tally_prune: String,
    pub(crate) tallies: String,
}

/// The columns of a queue record, in `queue::record`'s order.
const QUEUE_COLUMNS: &str = "name, paused, max_running, updated_at, max_per_key, rate_starts, \
     rate_period_ms, key_rate_starts, key_rate_period_ms";

/// The `NOTIFY` payload that wakes the workers' queue watchers (a queue was paused or
/// resumed): a control character, which no queue name may hold.
pub(crate) const CONTROLS_PAYLOAD: &str = "\u{1}queues";

/// The `NOTIFY` payload that wakes `Client::wait` in every process: a job someone waits on
/// (marked `awaited`) reached a final state.
pub(crate) const ENDED_PAYLOAD: &str = "\u{1}ended";
/// [`ENDED_PAYLOAD`] as an SQL expression.
const ENDED_SQL: &str = "chr(1) || 'ended'";

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let t = format!("\"{schema}\".jobs");
        let q = format!("\"{schema}\".queues");
        let l = format!("\"{schema}\".leaders");
        let a = format!("\"{schema}\".audit_log");
        let w = format!("\"{schema}\".workers");
        let ta = format!("\"{schema}\".tallies");
        let tm = format!("\"{schema}\".tally_mark");
        let qk = format!("\"{schema}\".queue_keys");
        let deps = format!("\"{schema}\".job_deps");
        // How many to take in claim order, or which jobs: see `claim_plan` (migration 6).
        let plan = format!("\"{schema}\".claim_plan");
        // Which jobs, in claim order, by the claim index whatever the statistics say, as
        // many as `claimable` allows (paused or metered: 0; limited: the free slots, claims
        // of the queue taking turns; migrations 3, 6 and 8).
        let claim_ids = format!("\"{schema}\".claim_ids");
        // The same from a floor (migration 12; `claim.rs`).
        let claim_ids_from = format!("\"{schema}\".claim_ids_from");
        let holds_o = UNIQUE_HOLDS_SQL
            .replace("unique_key", "o.unique_key")
            .replace("unique_states", "o.unique_states")
            .replace("CASE state", "CASE o.state");
        // Dependents (`c`) of jobs going away stop counting `n.k` edges each; one left
        // pending with nothing to wait for is released now, as a settled dependency
        // releases it (migration 13): available, or scheduled when due later.
        let uncount = format!(
            "UPDATE {t} c SET waiting_on = c.waiting_on - n.k,
                    state = CASE WHEN c.state = 'pending' AND c.waiting_on = n.k
                                 THEN CASE WHEN c.run_at > now() THEN 'scheduled' ELSE 'available' END
                                 ELSE c.state END,
                    run_at = CASE WHEN c.state = 'pending' AND c.waiting_on = n.k
                                  THEN greatest(c.run_at, now()) ELSE c.run_at END"
        );
        // Wakes the queues of the dependents `lowered` left available (or the schedulers:
        // '' is never a queue name) in every process, on channel `$2`.
        let wake_released = "SELECT pg_notify($2, r.q)
                   FROM (SELECT DISTINCT CASE WHEN state = 'available' THEN queue ELSE '' END AS q
                         FROM lowered WHERE state IN ('available', 'scheduled')) r";
        let wake_released_4 = wake_released.replace("$2", "$4");
        Sql {
            insert: format!(
                "WITH input AS (
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int2[],
                                        $6::int4[], $7::timestamptz[], $8::text[], $9::text[],
                                        $10::int8[], $11::text[], $14::int2[], $15::int8[],
                                        $16::text[])
                     WITH ORDINALITY AS i(kind, queue, args, state, priority, max_attempts, run_at,
                                          tags, backoff, timeout_ms, unique_key, unique_states,
                                          unique_for_ms, partition_key, ord)
                 ), ins AS (
                   INSERT INTO {t} (kind, queue, args, state, priority, max_attempts, run_at,
                                    created_at, tags, unique_key, backoff, timeout_ms,
                                    unique_states, unique_for_ms, partition_key)
                   SELECT kind, queue, args::jsonb, state, priority, max_attempts, run_at, $12,
                          tags::jsonb, unique_key, backoff::jsonb, timeout_ms, unique_states,
                          unique_for_ms, partition_key
                   FROM input ORDER BY ord
                   ON CONFLICT DO NOTHING
                   RETURNING id, queue, state, unique_key
                 ), notified AS (
                   SELECT pg_notify($13, q.queue) FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') q
                   UNION ALL
                   -- '' (never a queue name) wakes schedulers for jobs due later.
                   SELECT pg_notify($13, '') WHERE EXISTS (SELECT 1 FROM ins WHERE state = 'scheduled')
                 )
                 SELECT id, unique_key, (SELECT count(*) FROM notified) AS n FROM ins ORDER BY id"
            ),
            insert_one: format!(
                "WITH ins AS (
                   INSERT INTO {t} (kind, queue, args, state, priority, max_attempts, run_at,
                                    created_at, tags, backoff, timeout_ms)
                   VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11)
                   RETURNING id
                 )
                 SELECT id, pg_notify($12, $13)::text FROM ins"
            ),
            insert_plain: format!(
                "WITH ins AS (
                   INSERT INTO {t} (kind, queue, args, state, priority, max_attempts, run_at,
                                    created_at, tags, backoff, timeout_ms)
                   SELECT kind, queue, args::jsonb, state, priority, max_attempts, run_at, $11,
                          tags::jsonb, backoff::jsonb, timeout_ms
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int2[],
                               $6::int4[], $7::timestamptz[], $8::text[], $9::text[], $10::int8[])
                        AS i(kind, queue, args, state, priority, max_attempts, run_at, tags,
                             backoff, timeout_ms)
                   RETURNING id
                 ), notified AS (
                   -- Every job is written (no unique keys), so the client knows what to wake:
                   -- queues with available jobs, and '' for schedulers if any are scheduled.
                   SELECT pg_notify($12, q) FROM unnest($13::text[]) AS q
                 )
                 SELECT array_agg(id), (SELECT count(*) FROM notified) FROM ins"
            ),
            // The common batch: one job type with its default options, so every column but
            // the payload and the run time is the same. Binding those once instead of as
            // arrays spares the server zipping ten arrays row by row (~25 % of the insert).
            insert_shared: format!(
                "WITH ins AS (
                   INSERT INTO {t} (kind, queue, args, state, priority, max_attempts, run_at,
                                    created_at, tags, backoff, timeout_ms)
                   SELECT $1, $2, a::jsonb, $3, $4, $5, r, $6, $7::jsonb, $8::jsonb, $9
                   FROM unnest($10::text[], $11::timestamptz[]) AS u(a, r)
                   RETURNING id
                 ), notified AS (
                   SELECT pg_notify($12, q) FROM unnest($13::text[]) AS q
                 )
                 SELECT array_agg(id), (SELECT count(*) FROM notified) FROM ins"
            ),
            find_unique: format!(
                "SELECT id, unique_key, state, finalized_at, unique_for_ms FROM {t}
                 WHERE unique_key = ANY($1) AND {UNIQUE_HOLDS_SQL}"
            ),
            // Holders whose uniqueness period passed since they finished: their final
            // states stop holding (fenced on the state and time the inserter saw).
            release_unique: format!(
                "UPDATE {t} SET unique_states = 15
                 WHERE id = ANY($1) AND state IN {FINAL} AND unique_for_ms IS NOT NULL
                   AND finalized_at + least(unique_for_ms, {MAX_PERIOD_MS}) * interval '1 millisecond' <= $2"
            ),
            release_unique_of: format!(
                "UPDATE {t} AS o SET unique_states = 15 FROM {t} AS j
                 WHERE j.id = $1 AND o.unique_key = j.unique_key AND o.id <> j.id
                   AND o.state IN {FINAL} AND o.unique_for_ms IS NOT NULL
                   AND o.finalized_at + least(o.unique_for_ms, {MAX_PERIOD_MS}) * interval '1 millisecond' <= $2"
            ),
            claim: format!(
                "UPDATE {t} SET state = 'running', attempt = attempt + 1, attempted_at = $1,
                        attempted_by = $2, lease_expires_at = $3
                 WHERE id = ANY(ARRAY(SELECT {claim_ids}($4, $5, $2, $6)))
                 RETURNING {COLUMNS}, workflow_id IS NOT NULL"
            ),
            // `copy.rs`: ids for a copied batch (and whether text may go as is), the copy,
            // then its wake-ups.
            copy_ids: format!(
                "SELECT current_setting('server_encoding') = 'UTF8',
                        array(SELECT nextval('\"{schema}\".jobs_id_seq'::regclass)
                              FROM generate_series(1, $1))"
            ),
            copy_in: format!(
                "COPY {t} (id, kind, queue, args, state, priority, max_attempts, run_at,
                           created_at, tags, backoff, timeout_ms)
                 FROM STDIN (FORMAT binary)"
            ),
            copy_in_lean: format!(
                "COPY {t} (id, kind, queue, args, state, priority, max_attempts, run_at, created_at)
                 FROM STDIN (FORMAT binary)"
            ),
            notify_each: "SELECT count(pg_notify($1, q)) FROM unnest($2::text[]) AS q".to_owned(),
            claim_from: format!(
                "UPDATE {t} SET state = 'running', attempt = attempt + 1, attempted_at = $1,
                        attempted_by = $2, lease_expires_at = $3
                 WHERE id = ANY(ARRAY(SELECT {claim_ids_from}($4, $5, $2, $6, $7, $8, $9)))
                 RETURNING {COLUMNS}, workflow_id IS NOT NULL"
            ),
            // A metered queue's claim: `claim_plan` says how many in claim order, or which.
            claim_metered: format!(
                "WITH plan AS MATERIALIZED (SELECT o_n, o_ids FROM {plan}($4, $5, $1, $2, $6)),
                 plain AS (SELECT id FROM {t} WHERE state = 'available' AND queue = $4
                           ORDER BY priority, run_at, id
                           LIMIT (SELECT o_n FROM plan) FOR UPDATE SKIP LOCKED)
                 UPDATE {t} SET state = 'running', attempt = attempt + 1, attempted_at = $1,
                        attempted_by = $2, lease_expires_at = $3
                 WHERE id = ANY(ARRAY(SELECT id FROM plain UNION ALL SELECT unnest(o_ids) FROM plan))
                 RETURNING {COLUMNS}, workflow_id IS NOT NULL"
            ),
            // Outcomes, lease extensions and releases of running attempts share one shape:
            // `locked` finds the rows by primary key alone and locks them in id order, then
            // the fence (running, same attempt) is checked on the locked rows. (The plain
            // outcome statement, `finish_lean`, keeps the three properties below without the
            // separate lock: see `finish`.)
            // - By primary key alone: with `state = 'running'` on the scanned table, the
            //   planner may drive the statement from the running-jobs index and test every
            //   running row against the id array (a nested loop of running rows × batch:
            //   24 s for 1,000 ids among 90,000 running rows when the statistics said few
            //   were running). Here the cost is the batch's, whatever the statistics say.
            // - In id order: the completer and the heartbeat update overlapping sets of rows
            //   at once; taking row locks in one order makes a deadlock between them
            //   impossible (it happened under load when each locked in its array's order).
            // A row locked while another transaction changed it is re-read before the fence
            // is checked (EvalPlanQual), so the fence sees the latest state.
            // - Planned per call, never prepared (`persistent(false)`): a generic plan does
            //   not know the arrays' length, guesses ten rows and joins the batch to its own
            //   arrays in a nested loop, unnesting the arrays once per row (1,000 outcomes:
            //   a million row pairs; the bench fell from ~50k to ~4k jobs/s). Planning with
            //   the arrays in hand costs a fraction of a millisecond per batch.
            finish: finish(&t, &q, &deps, true),
            finish_lean: finish(&t, &q, &deps, false),
            finish_completions: finish_completions(&t, &q),
            extend: format!(
                "WITH u AS (
                   SELECT * FROM unnest($2::int8[], $3::int4[]) AS u(id, attempt)
                 ), locked AS (
                   SELECT id, state, attempt FROM {t} WHERE id = ANY($2::int8[])
                   ORDER BY id FOR UPDATE
                 )
                 UPDATE {t} AS j SET lease_expires_at = $1
                 FROM locked l JOIN u ON u.id = l.id AND u.attempt = l.attempt
                 WHERE j.id = l.id AND l.state = 'running'
                 RETURNING j.id"
            ),
            release: format!(
                "WITH u AS (
                   SELECT * FROM unnest($2::int8[], $3::int4[]) AS u(id, attempt)
                 ), locked AS (
                   SELECT id, state, attempt FROM {t} WHERE id = ANY($2::int8[])
                   ORDER BY id FOR UPDATE
                 ), released AS (
                   UPDATE {t} AS j SET state = 'available', attempt = j.attempt - 1,
                          lease_expires_at = NULL, run_at = least(j.run_at, $1)
                   FROM locked l JOIN u ON u.id = l.id AND u.attempt = l.attempt
                   WHERE j.id = l.id AND l.state = 'running'
                   RETURNING j.queue
                 ), notified AS (
                   SELECT pg_notify($4, q.queue) FROM (SELECT DISTINCT queue FROM released) q
                 )
                 SELECT count(*), (SELECT count(*) FROM notified) FROM released"
            ),
            rescue: format!(
                "WITH expired AS (
                   SELECT id FROM {t} WHERE state = 'running' AND lease_expires_at < $1
                   ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
                 ), rescued AS (
                 UPDATE {t} AS j SET
                   state = CASE WHEN j.attempt >= j.max_attempts THEN 'discarded' ELSE 'retryable' END,
                   finalized_at = CASE WHEN j.attempt >= j.max_attempts THEN $1 END,
                   lease_expires_at = NULL, run_at = $1,
                   errors = j.errors || jsonb_build_array(jsonb_build_object(
                     'attempt', j.attempt, 'at', $3::text,
                     'message', $4 || coalesce(j.attempted_by, '?') || $5))
                 FROM expired WHERE j.id = expired.id
                 RETURNING j.state, j.awaited
                 ), notified AS (
                   SELECT pg_notify($6, {ENDED_SQL})
                   WHERE EXISTS (SELECT 1 FROM rescued WHERE awaited AND state = 'discarded')
                 )
                 SELECT state, (SELECT count(*) FROM notified) FROM rescued"
            ),
            promote: format!(
                "WITH promoted AS (
                   UPDATE {t} SET state = 'available'
                   WHERE id IN (SELECT id FROM {t} WHERE state IN ('scheduled', 'retryable')
                                AND run_at <= $1 ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                   RETURNING queue
                 ), queues AS (SELECT queue, count(*) AS n FROM promoted GROUP BY queue),
                 notified AS (SELECT queue, n, pg_notify($3, queue) FROM queues)
                 SELECT coalesce(array_agg(queue), '{{}}'), coalesce(array_agg(n), '{{}}'),
                        (SELECT min(run_at) FROM {t} WHERE state IN ('scheduled', 'retryable')
                         AND run_at > $1)
                 FROM notified"
            ),
            cancel: format!(
                "WITH c AS (
                   UPDATE {t} SET state = 'cancelled', finalized_at = $1, lease_expires_at = NULL
                   WHERE id = $2 AND state IN {NON_FINAL} RETURNING *
                 )
                 SELECT {COLUMNS}, (CASE WHEN awaited THEN pg_notify($3, {ENDED_SQL}) END)::text
                 FROM c"
            ),
            delete: format!(
                "DELETE FROM {t} WHERE id = $1 AND state <> 'running' RETURNING {COLUMNS}"
            ),
            delete_ends_step: format!(
                "UPDATE {t} SET state = 'cancelled', finalized_at = now()
                 WHERE id = $1 AND has_dependents
                   AND state IN ('pending', 'available', 'scheduled', 'retryable')"
            ),
            // An edge out of a job whose `has_dependents` is cleared was counted when it
            // completed (outcome batches do not mark them).
            // The dependents it leaves waiting for nothing are released, and woken (`$2`:
            // the channel); returns how many dependents stopped counting an edge.
            delete_edges: format!(
                "WITH p AS (
                   SELECT has_dependents FROM {t} WHERE id = $1 AND state <> 'running'
                 ), gone AS (
                   DELETE FROM {deps} WHERE parent_id = $1 AND EXISTS (SELECT 1 FROM p)
                   RETURNING child_id, settled
                 ), kids AS (
                   -- Locked in id order first, as every statement settling steps does.
                   SELECT id FROM {t} WHERE id = ANY(ARRAY(
                     SELECT child_id FROM gone WHERE NOT settled AND (SELECT has_dependents FROM p)))
                   ORDER BY id FOR UPDATE
                 ), lowered AS (
                   {uncount}
                   FROM (SELECT child_id, count(*) AS k FROM gone
                         WHERE NOT settled AND (SELECT has_dependents FROM p)
                         GROUP BY child_id) n
                   WHERE c.id = n.child_id AND (SELECT count(*) FROM kids) >= 0
                   RETURNING c.queue, c.state
                 ), woken AS (
                   {wake_released}
                 ), gone_in AS (
                   DELETE FROM {deps} WHERE child_id = $1 AND EXISTS (SELECT 1 FROM p)
                   RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM lowered), (SELECT count(*) FROM woken),
                        (SELECT count(*) FROM gone_in)"
            ),
            retry: format!(
                // A workflow step whose dependencies have not all settled waits for them
                // again (`pending`); the others become available and wake their queue.
                "UPDATE {t} AS j SET state = CASE WHEN j.waiting_on > 0 THEN 'pending'
                                                 ELSE 'available' END,
                        run_at = $1, finalized_at = NULL,
                        lease_expires_at = NULL, max_attempts = greatest(j.max_attempts, j.attempt + 1),
                        result = NULL, progress = NULL
                 WHERE j.id = $2 AND j.state <> 'running' AND j.state <> 'pending'
                   AND (j.unique_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM {t} o WHERE o.unique_key = j.unique_key AND o.id <> j.id
                        AND {holds_o}))
                 RETURNING CASE WHEN j.state = 'available' THEN j.queue END,
                           (CASE WHEN j.state = 'available' THEN pg_notify($3, j.queue) END)::text"
            ),
            get: format!("SELECT {COLUMNS} FROM {t} WHERE id = $1"),
            // With the jobs, the dependency edges in and out of the workflow steps among them
            // (index ranges; none for plain jobs); the workflows they leave empty are deleted
            // after (`prune.rs`). Returns how many jobs, and those workflows' ids.
            // A failed step's edges to the steps it cancelled are not settled: they stop
            // counting, as a deleted step's do, and a dependent retried by hand meanwhile
            // (waiting for it again) is released and woken (`$4`: the channel) rather than
            // left waiting for a job that no longer exists. Dependents pruned in the same
            // batch are left to their own delete.
            prune: format!(
                "WITH gone AS (
                   DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE state IN {FINAL}
                   AND state = $3 AND finalized_at < $1 ORDER BY finalized_at LIMIT $2
                   FOR UPDATE SKIP LOCKED)
                   RETURNING id, workflow_id, has_dependents
                 ), out_edges AS (
                   DELETE FROM {deps} WHERE parent_id = ANY(ARRAY(
                     SELECT id FROM gone WHERE workflow_id IS NOT NULL))
                   RETURNING parent_id, child_id, settled
                 ), in_edges AS (
                   DELETE FROM {deps} WHERE child_id = ANY(ARRAY(
                     SELECT id FROM gone WHERE workflow_id IS NOT NULL))
                 ), uncounted AS (
                   SELECT child_id, count(*) AS k FROM out_edges
                   WHERE NOT settled
                     AND parent_id = ANY(ARRAY(SELECT id FROM gone WHERE has_dependents))
                     AND child_id <> ALL(ARRAY(SELECT id FROM gone))
                   GROUP BY child_id
                 ), kids AS (
                   -- Locked in id order first, as every statement settling steps does.
                   SELECT id FROM {t} WHERE id = ANY(ARRAY(SELECT child_id FROM uncounted))
                   ORDER BY id FOR UPDATE
                 ), lowered AS (
                   {uncount}
                   FROM uncounted n
                   WHERE c.id = n.child_id AND (SELECT count(*) FROM kids) >= 0
                   RETURNING c.queue, c.state
                 ), woken AS (
                   {wake_released_4}
                 )
                 SELECT (SELECT count(*) FROM gone),
                        (SELECT array_agg(DISTINCT workflow_id) FROM gone
                         WHERE workflow_id IS NOT NULL),
                        (SELECT count(*) FROM lowered), (SELECT count(*) FROM woken)"
            ),
            // Inside the application's transaction: a NOTIFY is delivered at its commit.
            complete_in_tx: format!(
                "WITH c AS (
                   UPDATE {t} SET state = 'completed', finalized_at = $1, lease_expires_at = NULL
                   WHERE id = $2 AND state = 'running' AND attempt = $3 RETURNING awaited
                 )
                 SELECT (CASE WHEN awaited THEN pg_notify($4, {ENDED_SQL}) END)::text FROM c"
            ),
            set_progress: format!(
                "UPDATE {t} SET progress = $1::jsonb WHERE id = $2 AND state = 'running' AND attempt = $3"
            ),
            watch_end: format!("UPDATE {t} SET awaited = true WHERE id = $1 AND NOT awaited"),
            // A claimed row that cannot be read: discarded with the problem recorded. The
            // history is appended to when it is an array, started afresh when the history
            // itself is what is unreadable (the problem quotes what it held).
            quarantine: format!(
                "UPDATE {t} SET state = 'discarded', finalized_at = $1, lease_expires_at = NULL,
                        errors = CASE WHEN jsonb_typeof(errors) = 'array' THEN errors
                                      ELSE '[]'::jsonb END || jsonb_build_array($2::jsonb)
                 WHERE id = $3 AND state = 'running' AND attempt = $4"
            ),
            // Upserts the record and wakes every process's queue watcher; on resume, the
            // queue's producers too.
            set_paused: format!(
                "WITH up AS (
                   INSERT INTO {q} (name, paused, updated_at) VALUES ($1, $2, $3)
                   ON CONFLICT (name) DO UPDATE
                     SET paused = EXCLUDED.paused, updated_at = EXCLUDED.updated_at
                   RETURNING {QUEUE_COLUMNS})
                 SELECT {QUEUE_COLUMNS}, pg_notify($4, $5)::text,
                        (CASE WHEN paused THEN NULL ELSE pg_notify($4, name) END)::text
                 FROM up"
            ),
            // A new or raised limit lets waiting jobs start: the queue's producers are woken.
            // A new rate starts with a full bucket, a new rate per key with full key buckets;
            // the walk over the keys starts afresh.
            set_limits: format!(
                "WITH old AS (
                   SELECT key_rate_starts, key_rate_period_ms FROM {q} WHERE name = $1
                 ), gone AS (
                   DELETE FROM {qk} WHERE queue = $1 AND EXISTS (
                     SELECT 1 FROM old WHERE (old.key_rate_starts, old.key_rate_period_ms)
                                             IS DISTINCT FROM ($9::int4, $10::int8))
                 ), up AS (
                   INSERT INTO {q} AS cur (name, max_running, max_per_key, rate_starts,
                                           rate_period_ms, key_rate_starts, key_rate_period_ms,
                                           updated_at)
                   VALUES ($1, $2, $6, $7, $8, $9, $10, $3)
                   ON CONFLICT (name) DO UPDATE
                     SET max_running = EXCLUDED.max_running, max_per_key = EXCLUDED.max_per_key,
                         rate_starts = EXCLUDED.rate_starts,
                         rate_period_ms = EXCLUDED.rate_period_ms,
                         key_rate_starts = EXCLUDED.key_rate_starts,
                         key_rate_period_ms = EXCLUDED.key_rate_period_ms,
                         key_cursor = NULL,
                         tokens = CASE WHEN (EXCLUDED.rate_starts, EXCLUDED.rate_period_ms)
                                       IS NOT DISTINCT FROM (cur.rate_starts, cur.rate_period_ms)
                                       THEN cur.tokens END,
                         updated_at = EXCLUDED.updated_at
                   RETURNING {QUEUE_COLUMNS})
                 SELECT {QUEUE_COLUMNS}, pg_notify($4, $5)::text, pg_notify($4, name)::text
                 FROM up"
            ),
            is_metered: format!(
                "SELECT EXISTS (SELECT 1 FROM {q} WHERE name = $1 AND (max_per_key IS NOT NULL
                                OR rate_starts IS NOT NULL OR key_rate_starts IS NOT NULL))"
            ),
            // One probe of the claim index per queue.
            with_available: format!(
                "SELECT q FROM unnest($1::text[]) AS q WHERE EXISTS
                   (SELECT 1 FROM {t} j WHERE j.state = 'available' AND j.queue = q)"
            ),
            // The claim index holds exactly the available jobs.
            oldest_available: format!(
                "SELECT queue, min(run_at) FROM {t} WHERE state = 'available'
                 GROUP BY queue ORDER BY queue"
            ),
            queues: format!(
                "SELECT {QUEUE_COLUMNS} FROM {q} ORDER BY name"
            ),
            // Taken when free or ended; renewed only by its holder (who keeps elected_at).
            lead: format!(
                "INSERT INTO {l} AS l (name, holder, elected_at, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE
                   SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
                       elected_at = CASE WHEN l.holder = EXCLUDED.holder
                                         THEN l.elected_at ELSE EXCLUDED.elected_at END
                   WHERE l.holder = EXCLUDED.holder OR l.expires_at <= $3
                 RETURNING holder"
            ),
            resign: format!("DELETE FROM {l} WHERE name = $1 AND holder = $2"),
            leader: format!("SELECT holder, elected_at, expires_at FROM {l} WHERE name = $1"),
            audit_insert: format!(
                "INSERT INTO {a} (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)
                 RETURNING id"
            ),
            register_worker: format!(
                "INSERT INTO {w} (id, host, pid, version, queues, started_at, heartbeat_at, running,
                   interval_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,
                   version = EXCLUDED.version, queues = EXCLUDED.queues,
                   started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at,
                   running = EXCLUDED.running, interval_ms = EXCLUDED.interval_ms"
            ),
            deregister_worker: format!("DELETE FROM {w} WHERE id = $1"),
            workers: format!(
                "SELECT id, host, pid, version, queues, started_at, heartbeat_at, running, interval_ms
                 FROM {w} ORDER BY started_at, id"
            ),
            forget_workers: format!("DELETE FROM {w} WHERE heartbeat_at < $1"),
            tally_mark_init: format!(
                "INSERT INTO {tm} (name, upto) VALUES ('finished', $1) ON CONFLICT (name) DO NOTHING"
            ),
            tally_mark_lock: format!("SELECT upto FROM {tm} WHERE name = 'finished' FOR UPDATE"),
            tally_mark_read: format!("SELECT upto FROM {tm} WHERE name = 'finished'"),
            tally_any: format!(
                "SELECT EXISTS (SELECT 1 FROM {t} WHERE state IN ('completed', 'discarded', 'cancelled')
                   AND finalized_at > $1 AND finalized_at <= $2)"
            ),
            // The predicate is jobs_finalized's, so the tally reads that index's range.
            tally_add: format!(
                "WITH c AS (
                   SELECT date_trunc('minute', finalized_at) AS minute, queue, state, count(*) AS n
                   FROM {t}
                   WHERE state IN ('completed', 'discarded', 'cancelled')
                     AND finalized_at > $1 AND finalized_at <= $2
                   GROUP BY 1, 2, 3),
                 ins AS (
                   INSERT INTO {ta} AS a (minute, queue, state, n) SELECT minute, queue, state, n FROM c
                   ON CONFLICT (minute, queue, state) DO UPDATE SET n = a.n + EXCLUDED.n)
                 SELECT coalesce(sum(n), 0)::int8 FROM c"
            ),
            tally_mark_move: format!("UPDATE {tm} SET upto = $1 WHERE name = 'finished'"),
            tally_prune: format!("DELETE FROM {ta} WHERE minute < $1"),
            tallies: format!(
                "SELECT minute, queue, state, n FROM {ta} WHERE minute >= $1 ORDER BY minute, queue, state"
            ),
            audit_log: format!(
                "SELECT id, at, actor, action, target, detail FROM {a}
                 WHERE id < $1 ORDER BY id DESC LIMIT $2"
            ),
            table: t,
        }
    }
}

/// How a plain outcome statement finds and fences its rows: `u` is the batch, with a
/// `running` column (see `finish`).
const FENCED: &str = "FROM u
           WHERE j.id = ANY($1::int8[]) AND j.id = u.id AND j.attempt = u.attempt
             AND j.state = u.running";

/// The plain outcome statement for a batch of completions: the same fence and lock order as
/// `finish` without settling (`$1` ids, `$2` attempts, `$3` end times, `$4` results,
/// `$5` the channel), returning one row: the ids applied, whether one had dependents (the
/// trigger settled them) and the notifications sent. Completions make nothing available or
/// scheduled, so only two wake-ups remain: a limited queue's slot and `Client::wait`.
fn finish_completions(t: &str, q: &str) -> String {
    format!(
        "WITH u AS (
           SELECT *, 'running'::text AS running
           FROM unnest($1::int8[], $2::int4[], $3::timestamptz[], $4::text[])
             AS u(id, attempt, finalized_at, result) OFFSET 0
         ), done AS (
           UPDATE {t} AS j SET state = 'completed', lease_expires_at = NULL,
                  finalized_at = u.finalized_at, result = coalesce(u.result::jsonb, j.result)
           {FENCED}
           RETURNING j.id, j.queue, j.awaited, j.has_dependents
         ), notified AS (
           SELECT pg_notify($5, q.name) FROM {q} q
           WHERE (q.max_running IS NOT NULL OR q.max_per_key IS NOT NULL)
             AND q.name IN (SELECT queue FROM done)
           UNION ALL
           SELECT pg_notify($5, {ENDED_SQL}) WHERE EXISTS (SELECT 1 FROM done WHERE awaited)
         )
         SELECT coalesce(array_agg(id), '{{}}'), coalesce(bool_or(has_dependents), false),
                (SELECT count(*) FROM notified)
         FROM done"
    )
}

/// The outcome statement (see the notes at `Sql::finish`'s use): with `settling`, it also
/// locks the workflow steps its completions settle (in id order), counts their completed
/// parents down, releases those that reach 0 and returns their queues; without, those
/// columns are empty and completions of steps (none, for the process that uses it) would
/// be settled by the trigger.
fn finish(t: &str, q: &str, deps: &str, settling: bool) -> String {
    let (kids, has_dependents, fence, settle, notify_released, tail) = if settling {
        (
            format!(
                ", kids AS (
                   -- Workflow steps these jobs' ends will settle, locked now in id order:
                   -- two batches ending parents of the same steps then wait for each other
                   -- instead of deadlocking. None for plain jobs.
                   -- (`= ANY(ARRAY(…))`: an index range per parent whatever the planner
                   -- guesses of `locked`, never a scan of the edges.)
                   SELECT c.id FROM {t} c
                   WHERE c.id IN (SELECT d.child_id FROM {deps} d
                                  WHERE d.parent_id = ANY(ARRAY(
                                    SELECT id FROM locked WHERE has_dependents)))
                   ORDER BY c.id FOR UPDATE
                 )"
            ),
            ",
                          -- A completion settles its dependents below, in this statement,
                          -- aggregated over the batch; cleared, the flag keeps migration
                          -- 13's row trigger (for every other end) from doing it again. A
                          -- completed job's edges are all settled: nothing needs it after.
                          has_dependents = j.has_dependents AND u.state <> 'completed'",
            "
                     AND (SELECT count(*) FROM kids) >= 0",
            format!(
                ", counted AS (
                   -- The edges out of the completed jobs not settled before (an
                   -- ignore_failure edge of a failure retried by hand is). They are not
                   -- marked: a completed job's `has_dependents` is cleared above, so no later
                   -- end of it counts them again (writing them cost a tenth of each batch).
                   SELECT e.child_id, count(*) AS k FROM {deps} e
                   WHERE e.parent_id = ANY(ARRAY(SELECT id FROM done
                                                 WHERE has_dependents AND state = 'completed'))
                     AND NOT e.settled
                   GROUP BY e.child_id
                 ), released AS (
                   -- Each dependent loses one per parent completed; one that reaches 0
                   -- while pending is released (as migration 13 describes).
                   UPDATE {t} c SET
                          waiting_on = c.waiting_on - n.k,
                          state = CASE WHEN c.state = 'pending' AND c.waiting_on = n.k
                                       THEN CASE WHEN c.run_at > (SELECT max(finalized_at) FROM u)
                                                 THEN 'scheduled' ELSE 'available' END
                                       ELSE c.state END,
                          run_at = CASE WHEN c.state = 'pending' AND c.waiting_on = n.k
                                        THEN greatest(c.run_at, (SELECT max(finalized_at) FROM u))
                                        ELSE c.run_at END
                   FROM counted n WHERE c.id = n.child_id
                   RETURNING c.queue, c.state
                 )"
            ),
            "
                   UNION ALL
                   -- Workflow steps released: their queues, or the schedulers.
                   SELECT pg_notify($8, r.q)
                   FROM (SELECT DISTINCT CASE WHEN state = 'available' THEN queue ELSE '' END AS q
                         FROM released WHERE state IN ('available', 'scheduled')) r",
            "
                        -- Failures of jobs with dependents: the trigger settled them.
                        has_dependents AND state <> 'completed',
                        -- The queues of the steps this batch released, and whether it
                        -- released any for later (the same on every row).
                        (SELECT array_agg(DISTINCT queue) FROM released
                         WHERE state = 'available'),
                        (SELECT count(*) > 0 FROM released WHERE state = 'scheduled')",
        )
    } else {
        (
            String::new(),
            "",
            "",
            String::new(),
            "",
            "
                        -- Any end of a job with dependents: the trigger settled it.
                        has_dependents, NULL::text[], false",
        )
    };
    // Settling needs each row's `has_dependents` before the update and the steps locked
    // after the rows (`locked`, then `kids`). A plain batch locks its rows as it updates
    // them, found by primary key (`id = ANY`); the fence compares with the batch's own
    // `running` column, so no state index can serve the jobs' side (`OFFSET 0` keeps the
    // planner from folding the constant back in), and a fenced row updated meanwhile is
    // re-read before the fence is checked (EvalPlanQual). Its locks usually follow id
    // order (the arrays come sorted, and so do the index's rows), but a sequential scan of
    // a small table meets rows in physical order: hence `Inner::running_rows`. Locking
    // first cost a lock, its WAL record and a second join per row: ~12 % of a 500-job
    // batch (docs/benchmarks.md).
    let (running, locked, from, old_deps) = if settling {
        (
            "",
            format!(
                ", locked AS (
           SELECT id, state, attempt, has_dependents FROM {t} WHERE id = ANY($1::int8[])
           ORDER BY id FOR UPDATE
         )"
            ),
            "FROM locked l JOIN u ON u.id = l.id AND u.attempt = l.attempt
           WHERE j.id = l.id AND l.state = 'running'",
            "l",
        )
    } else {
        (", 'running'::text AS running", String::new(), FENCED, "j")
    };
    let offset = if settling { "" } else { " OFFSET 0" };
    format!(
        "WITH u AS (
           SELECT *{running} FROM unnest($1::int8[], $2::int4[], $3::text[], $4::int4[],
                                $5::timestamptz[], $6::timestamptz[], $7::text[],
                                $9::text[])
             AS u(id, attempt, state, delta, run_at, finalized_at, error, result){offset}
         ){locked}{kids}, done AS (
           UPDATE {t} AS j SET state = u.state, lease_expires_at = NULL,
                  attempt = j.attempt + u.delta, run_at = coalesce(u.run_at, j.run_at),
                  finalized_at = u.finalized_at,
                  errors = CASE WHEN u.error IS NULL THEN j.errors
                                ELSE j.errors || jsonb_build_array(u.error::jsonb) END,
                  result = coalesce(u.result::jsonb, j.result){has_dependents}
           {from}{fence}
           RETURNING j.id, j.queue, j.state, j.awaited, {old_deps}.has_dependents
         ){settle}, notified AS (
           -- Jobs due at once wake their queue's producers in every process; jobs
           -- due later wake the schedulers ('' is never a queue name).
           SELECT pg_notify($8, q.queue)
           FROM (SELECT DISTINCT queue FROM done WHERE state = 'available') q
           UNION ALL
           SELECT pg_notify($8, '')
           WHERE EXISTS (SELECT 1 FROM done WHERE state IN ('scheduled', 'retryable'))
           UNION ALL
           -- A job that stops running frees a slot of a limited queue (or of its
           -- key): wake the producers that found it full, in every process.
           SELECT pg_notify($8, q.name) FROM {q} q
           WHERE (q.max_running IS NOT NULL OR q.max_per_key IS NOT NULL)
             AND q.name IN (SELECT queue FROM done)
           UNION ALL
           -- A job someone waits on (Client::wait) ended.
           SELECT pg_notify($8, {ENDED_SQL})
           WHERE EXISTS (SELECT 1 FROM done WHERE awaited AND state IN {FINAL}){notify_released}
         )
         SELECT id, CASE WHEN state = 'completed' THEN NULL ELSE queue END, state,
                (SELECT count(*) FROM notified),{tail}
         FROM done"
    )
}
