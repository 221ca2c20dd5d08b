//! Workflows on SQLite: inserting steps and edges in one transaction, reading them back,
//! cancelling a workflow. Settling dependents as parents end is the triggers' work
//! (migration 12), in the statement that records each outcome.

use chrono::{DateTime, Utc};
use errand_core::{
    check_workflow, plan_workflow, DepOutput, ErrorRecord, ExistingStep, JobId, JobState,
    NewWorkflow, StepEdge, StoreError, WorkflowError, WorkflowRecord, WorkflowStep,
    WorkflowSummary,
};
use sqlx::{Row, SqliteConnection};

use rusqlite::types::Value;

use crate::direct::{insert_rows, lite, prepare};
use crate::error::db;
use crate::row::{decode, micros, time, COLUMNS};
use crate::sql::to_json;
use crate::store::SqliteStore;

/// What an insert made due, for the wake-ups after it commits.
#[derive(Debug, Default)]
pub(crate) struct Inserted {
    pub(crate) ids: Vec<JobId>,
    pub(crate) queues: Vec<String>,
    pub(crate) scheduled: bool,
}

impl Inserted {
    /// Notes a step inserted in `state` on `queue`, for the wake-ups.
    fn saw(&mut self, state: JobState, queue: &str) {
        match state {
            JobState::Available if !self.queues.iter().any(|q| q == queue) => {
                self.queues.push(queue.to_owned())
            }
            JobState::Scheduled => self.scheduled = true,
            _ => {}
        }
    }

    pub(crate) fn wake(&self, s: &SqliteStore) {
        for q in &self.queues {
            s.signals.notify(q);
        }
        if self.scheduled {
            s.signals.notify_scheduled();
        }
    }
}

/// Inserts `wf` on `conn`, which must hold the write lock (`BEGIN IMMEDIATE`, or the
/// application's transaction after a write) so that the existing steps read and the ids
/// allocated cannot change before the insert.
pub(crate) async fn insert_on(
    conn: &mut SqliteConnection,
    wf: &NewWorkflow,
    now: DateTime<Utc>,
) -> Result<Inserted, StoreError> {
    let external = check_workflow(wf)?;
    let mut names: Vec<&str> = external.iter().map(String::as_str).collect();
    names.extend(wf.steps.iter().map(|s| s.step.as_str()));
    let rows = sqlx::query(
        "SELECT id, step, state FROM errand_jobs \
         WHERE workflow_id = ? AND step IN (SELECT value FROM json_each(?))",
    )
    .bind(&wf.id)
    .bind(to_json(&names))
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut existing = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.try_get(0).map_err(db)?;
        let state: String = r.try_get(2).map_err(db)?;
        existing.push(ExistingStep {
            step: r.try_get(1).map_err(db)?,
            id,
            state: StoreError::parse_state(id, &state)?,
        });
    }
    if !external.is_empty() && existing.is_empty() {
        let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM errand_workflows WHERE id = ?")
            .bind(&wf.id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if known.is_none() {
            return Err(WorkflowError::NoWorkflow(wf.id.clone()).into());
        }
    }
    // Ids above every id used (`FIRST_ID`), held by the write lock: the plan needs them
    // before the rows exist (edges, and steps cancelled at birth name their parents).
    let last: i64 = sqlx::query_scalar(LAST_ID)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let ids: Vec<JobId> = (1..=wf.steps.len() as i64).map(|i| last + i).collect();
    let plan = plan_workflow(wf, &ids, &existing, now)?;

    sqlx::query(INSERT_HEAD)
        .bind(&wf.id)
        .bind(&wf.name)
        .bind(micros(now))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let mut out = Inserted {
        ids,
        ..Inserted::default()
    };
    let rows: Vec<serde_json::Value> = step_rows(wf, &plan, now, &mut out)
        .into_iter()
        .map(|row| row.iter().map(json_value).collect())
        .collect();
    sqlx::query(&INSERT_STEPS_JSON)
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let edges: Vec<(JobId, JobId, bool, bool)> = plan
        .edges
        .iter()
        .map(|e| (e.parent, e.child, e.ignore_failure, e.settled))
        .collect();
    sqlx::query(
        "INSERT INTO errand_job_deps (parent_id, child_id, ignore_failure, settled) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?)",
    )
    .bind(to_json(&edges))
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if !plan.new_parents.is_empty() {
        sqlx::query(
            "UPDATE errand_jobs SET has_dependents = 1 \
             WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(to_json(&plan.new_parents))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    for h in &plan.holds {
        for (sql, args) in hold_updates(h, now) {
            let mut q = sqlx::query(sql);
            for a in args {
                q = match a {
                    Value::Integer(i) => q.bind(i),
                    Value::Text(t) => q.bind(t),
                    _ => q.bind(None::<i64>),
                };
            }
            q.execute(&mut *conn).await.map_err(db)?;
        }
    }
    Ok(out)
}

/// The statements that make an existing pending step wait for new ones too
/// ([`NewWorkflow::holds`]), with their arguments: more to wait on, and when a new step was
/// born cancelled on an edge without `ignore_failure`, the step cancelled — by an update the
/// failure trigger sees (its dependents follow it), then `cancelled_by` set apart (an update
/// setting it at once is one the trigger skips, as a step its own cascade cancels).
fn hold_updates(
    h: &errand_core::PlannedHold,
    now: DateTime<Utc>,
) -> Vec<(&'static str, Vec<Value>)> {
    let mut out = vec![(
        "UPDATE errand_jobs SET waiting_on = waiting_on + ?1 WHERE id = ?2",
        vec![Value::Integer(i64::from(h.more)), Value::Integer(h.id)],
    )];
    if let Some((parent, message)) = &h.cancel {
        out.push((
            "UPDATE errand_jobs SET state = 'cancelled', finalized_at = ?1, \
             errors = json_insert(errors, '$[#]', json(?2)), \
             has_dependents = has_dependents WHERE id = ?3 AND state = 'pending'",
            vec![
                Value::Integer(micros(now)),
                Value::Text(to_json(&ErrorRecord::new(0, now, message.clone()))),
                Value::Integer(h.id),
            ],
        ));
        out.push((
            "UPDATE errand_jobs SET cancelled_by = ?1 WHERE id = ?2",
            vec![Value::Integer(*parent), Value::Integer(h.id)],
        ));
    }
    out
}

/// The store's own inserts run on its rusqlite connection (`direct`), one `BEGIN IMMEDIATE`
/// transaction with prepared statements stepped per row: through sqlx, the same rows as one
/// `json_each` statement took 20 µs each (every field parsed out of its element again).
pub(crate) async fn insert(
    s: &SqliteStore,
    wf: &NewWorkflow,
    now: DateTime<Utc>,
) -> Result<Vec<JobId>, StoreError> {
    let external = check_workflow(wf)?;
    let w = s.writer().await?;
    let wf = wf.clone();
    let done = w
        .run(usize::MAX, move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(lite)?;
            let done = insert_direct(&tx, &wf, &external, now)?;
            tx.commit().map_err(lite)?;
            Ok(done)
        })
        .await?;
    drop(w);
    s.workflows_seen
        .store(true, std::sync::atomic::Ordering::Relaxed);
    done.wake(s);
    Ok(done.ids)
}

fn insert_direct(
    c: &rusqlite::Connection,
    wf: &NewWorkflow,
    external: &[String],
    now: DateTime<Utc>,
) -> Result<Inserted, StoreError> {
    let mut existing = Vec::new();
    let known = {
        let mut st = prepare(c, "SELECT 1 FROM errand_workflows WHERE id = ?1")?;
        st.exists([&wf.id]).map_err(lite)?
    };
    if known {
        let mut st = prepare(
            c,
            "SELECT id, state FROM errand_jobs WHERE workflow_id = ?1 AND step = ?2",
        )?;
        let names = external
            .iter()
            .map(String::as_str)
            .chain(wf.steps.iter().map(|s| s.step.as_str()));
        for name in names {
            let mut rows = st.query(rusqlite::params![wf.id, name]).map_err(lite)?;
            if let Some(r) = rows.next().map_err(lite)? {
                let id: i64 = r.get(0).map_err(lite)?;
                let state: String = r.get(1).map_err(lite)?;
                existing.push(ExistingStep {
                    step: name.to_owned(),
                    id,
                    state: StoreError::parse_state(id, &state)?,
                });
            }
        }
    } else if !external.is_empty() {
        return Err(WorkflowError::NoWorkflow(wf.id.clone()).into());
    }
    let last: i64 = prepare(c, LAST_ID)?
        .query_row([], |r| r.get(0))
        .map_err(lite)?;
    let ids: Vec<JobId> = (1..=wf.steps.len() as i64).map(|i| last + i).collect();
    let plan = plan_workflow(wf, &ids, &existing, now)?;
    prepare(c, INSERT_HEAD)?
        .execute(rusqlite::params![wf.id, wf.name, micros(now)])
        .map_err(lite)?;
    let mut out = Inserted {
        ids,
        ..Inserted::default()
    };
    insert_rows(
        c,
        "errand_jobs",
        &STEP_COLUMNS,
        step_rows(wf, &plan, now, &mut out),
        None,
    )?;
    let edges = plan.edges.iter().map(|e| {
        vec![
            Value::Integer(e.parent),
            Value::Integer(e.child),
            Value::Integer(i64::from(e.ignore_failure)),
            Value::Integer(i64::from(e.settled)),
        ]
    });
    insert_rows(c, "errand_job_deps", &EDGE_COLUMNS, edges.collect(), None)?;
    if !plan.new_parents.is_empty() {
        let mut st = prepare(c, "UPDATE errand_jobs SET has_dependents = 1 WHERE id = ?1")?;
        for id in &plan.new_parents {
            st.execute([id]).map_err(lite)?;
        }
    }
    for h in &plan.holds {
        for (sql, args) in hold_updates(h, now) {
            prepare(c, sql)?
                .execute(rusqlite::params_from_iter(args))
                .map_err(lite)?;
        }
    }
    Ok(out)
}

const LAST_ID: &str =
    "SELECT max((SELECT n FROM errand_id_floor), coalesce((SELECT max(id) FROM errand_jobs), 0))";
const INSERT_HEAD: &str =
    "INSERT OR IGNORE INTO errand_workflows (id, name, created_at) VALUES (?1, ?2, ?3)";
/// The columns a step's row sets, in [`step_rows`]' order.
const STEP_COLUMNS: [&str; 20] = [
    "id",
    "kind",
    "queue",
    "args",
    "state",
    "priority",
    "max_attempts",
    "run_at",
    "created_at",
    "finalized_at",
    "errors",
    "tags",
    "backoff",
    "timeout_ms",
    "partition_key",
    "workflow_id",
    "step",
    "waiting_on",
    "has_dependents",
    "cancelled_by",
];

/// The columns an edge's row sets.
const EDGE_COLUMNS: [&str; 4] = ["parent_id", "child_id", "ignore_failure", "settled"];

/// Every step's row from one JSON array of rows, in the application's transaction (one
/// statement through sqlx rather than a thread hop per row).
static INSERT_STEPS_JSON: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let fields: Vec<String> = (0..STEP_COLUMNS.len())
        .map(|i| format!("value ->> {i}"))
        .collect();
    format!(
        "INSERT INTO errand_jobs ({}) SELECT {} FROM json_each(?1) ORDER BY key",
        STEP_COLUMNS.join(", "),
        fields.join(", ")
    )
});

/// The rows of the plan's steps (parents first), in [`STEP_COLUMNS`] order, noting what
/// each makes due in `out`.
fn step_rows(
    wf: &NewWorkflow,
    plan: &errand_core::WorkflowPlan,
    now: DateTime<Utc>,
    out: &mut Inserted,
) -> Vec<Vec<Value>> {
    let text = |t: &str| Value::Text(t.to_owned());
    let opt_int = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
    plan.steps
        .iter()
        .map(|p| {
            let step = &wf.steps[p.index];
            let j = &step.job;
            out.saw(p.state, &j.queue);
            vec![
                Value::Integer(p.id),
                text(&j.kind),
                text(&j.queue),
                text(&j.args),
                text(p.state.as_str()),
                Value::Integer(i64::from(j.priority)),
                Value::Integer(i64::from(j.max_attempts)),
                Value::Integer(micros(j.run_at)),
                Value::Integer(micros(now)),
                opt_int(p.error.as_ref().map(|_| micros(now))),
                Value::Text(born_errors(p.error.as_deref(), now)),
                Value::Text(to_json(&j.tags)),
                j.backoff
                    .as_ref()
                    .map_or(Value::Null, |b| Value::Text(to_json(b))),
                opt_int(j.timeout_ms),
                j.partition_key.as_deref().map_or(Value::Null, text),
                text(&wf.id),
                text(&step.step),
                Value::Integer(i64::from(p.waiting_on)),
                Value::Integer(i64::from(p.has_dependents)),
                opt_int(p.cancelled_by),
            ]
        })
        .collect()
}

/// A row value as JSON, for [`INSERT_STEPS_JSON`].
fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(f) => (*f).into(),
        Value::Text(t) => t.clone().into(),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned().into(),
    }
}

/// The error history of a step born cancelled (a dependency had failed), else empty.
fn born_errors(error: Option<&str>, now: DateTime<Utc>) -> String {
    match error {
        Some(m) => to_json(&[ErrorRecord::new(0, now, m)]),
        None => "[]".to_owned(),
    }
}

pub(crate) async fn workflow(
    s: &SqliteStore,
    id: &str,
) -> Result<Option<WorkflowRecord>, StoreError> {
    let head = sqlx::query("SELECT name, created_at FROM errand_workflows WHERE id = ?")
        .bind(id)
        .fetch_optional(s.reader())
        .await
        .map_err(db)?;
    let Some(head) = head else {
        return Ok(None);
    };
    let created: i64 = head.try_get(1).map_err(db)?;
    let sql = format!(
        "SELECT {COLUMNS}, step, waiting_on, cancelled_by FROM errand_jobs \
         WHERE workflow_id = ? ORDER BY id"
    );
    let rows = sqlx::query(&sql)
        .bind(id)
        .fetch_all(s.reader())
        .await
        .map_err(db)?;
    // An edge out of a job whose `has_dependents` was cleared (it completed in an outcome
    // batch, which does not mark its edges: `outcome::complete_settling`) is settled.
    let edges = sqlx::query(
        "SELECT d.child_id, d.parent_id, p.step, d.ignore_failure, \
                d.settled OR NOT coalesce(p.has_dependents, 1) \
         FROM errand_jobs c JOIN errand_job_deps d ON d.child_id = c.id \
         LEFT JOIN errand_jobs p ON p.id = d.parent_id \
         WHERE c.workflow_id = ? ORDER BY d.child_id, d.parent_id",
    )
    .bind(id)
    .fetch_all(s.reader())
    .await
    .map_err(db)?;
    let n = COLUMNS.split(',').count();
    let mut steps = Vec::with_capacity(rows.len());
    for r in &rows {
        let job = decode(r)?;
        let deps = edges
            .iter()
            .filter(|e| e.try_get::<i64, _>(0).ok() == Some(job.id))
            .map(|e| StepEdge {
                parent: e.try_get(1).unwrap_or_default(),
                step: e
                    .try_get::<Option<String>, _>(2)
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                ignore_failure: e.try_get(3).unwrap_or_default(),
                settled: e.try_get(4).unwrap_or_default(),
            })
            .collect();
        steps.push(WorkflowStep {
            step: r.try_get(n).map_err(db)?,
            waiting_on: r.try_get(n + 1).map_err(db)?,
            cancelled_by: r.try_get(n + 2).map_err(db)?,
            job,
            deps,
        });
    }
    Ok(Some(WorkflowRecord {
        id: id.to_owned(),
        name: head.try_get(0).map_err(db)?,
        created_at: time(created).map_err(|e| StoreError::Corrupt { id: 0, reason: e })?,
        steps,
    }))
}

pub(crate) async fn workflows(
    s: &SqliteStore,
    limit: u32,
    before: Option<&str>,
) -> Result<Vec<WorkflowSummary>, StoreError> {
    let limit = if limit == 0 { 50 } else { limit };
    let heads = sqlx::query(
        "SELECT id, name, created_at FROM errand_workflows \
         WHERE seq < coalesce((SELECT seq FROM errand_workflows WHERE id = ?), 9223372036854775807) \
         ORDER BY seq DESC LIMIT ?",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(s.reader())
    .await
    .map_err(db)?;
    let mut out = Vec::with_capacity(heads.len());
    for h in heads {
        let id: String = h.try_get(0).map_err(db)?;
        let counts = sqlx::query(
            "SELECT state, count(*) FROM errand_jobs WHERE workflow_id = ? GROUP BY state",
        )
        .bind(&id)
        .fetch_all(s.reader())
        .await
        .map_err(db)?;
        let mut cs = Vec::with_capacity(counts.len());
        for c in counts {
            let state: String = c.try_get(0).map_err(db)?;
            let n: i64 = c.try_get(1).map_err(db)?;
            cs.push((StoreError::parse_state(0, &state)?, n as u64));
        }
        cs.sort();
        let created: i64 = h.try_get(2).map_err(db)?;
        out.push(WorkflowSummary {
            id,
            name: h.try_get(1).map_err(db)?,
            created_at: time(created).map_err(|e| StoreError::Corrupt { id: 0, reason: e })?,
            counts: cs,
        });
    }
    Ok(out)
}

pub(crate) async fn cancel(
    s: &SqliteStore,
    id: &str,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let w = s.writer().await?;
    let mut tx = w.begin().await?;
    // Every step ends here by the operator's hand: `cancelled_by = 0` (no job has id 0)
    // skips the settling triggers, so none is recorded as cancelled by another (a retry of
    // one revives nothing) — then the mark is cleared.
    let sql = format!(
        "UPDATE errand_jobs SET state = 'cancelled', finalized_at = ?, lease_expires_at = NULL, \
         cancelled_by = 0 WHERE workflow_id = ? AND {}",
        crate::sql::NON_FINAL
    );
    let n = sqlx::query(&sql)
        .bind(micros(now))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
    sqlx::query(
        "UPDATE errand_jobs SET cancelled_by = NULL WHERE workflow_id = ? AND cancelled_by = 0",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    drop(w);
    if n > 0 {
        s.signals.notify_ended();
        s.settled_wake();
    }
    Ok(n)
}

pub(crate) async fn job_step(
    s: &SqliteStore,
    id: JobId,
) -> Result<Option<(String, String)>, StoreError> {
    let row: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT workflow_id, step FROM errand_jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(s.reader())
            .await
            .map_err(db)?;
    Ok(match row {
        Some((Some(w), Some(st))) => Some((w, st)),
        _ => None,
    })
}

pub(crate) async fn dependency_outputs(
    s: &SqliteStore,
    id: JobId,
) -> Result<Vec<DepOutput>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.step, p.id, p.kind, p.state, p.result FROM errand_job_deps d \
         JOIN errand_jobs p ON p.id = d.parent_id WHERE d.child_id = ? ORDER BY p.id",
    )
    .bind(id)
    .fetch_all(s.reader())
    .await
    .map_err(db)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let pid: i64 = r.try_get(1).map_err(db)?;
        let state: String = r.try_get(3).map_err(db)?;
        out.push(DepOutput {
            step: r
                .try_get::<Option<String>, _>(0)
                .map_err(db)?
                .unwrap_or_default(),
            id: pid,
            kind: r.try_get(2).map_err(db)?,
            state: StoreError::parse_state(pid, &state)?,
            result: r.try_get(4).map_err(db)?,
        });
    }
    Ok(out)
}
