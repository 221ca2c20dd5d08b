//! Workflows on Postgres: inserting steps and edges in one transaction, reading them back,
//! cancelling a workflow. Settling dependents as parents end is the trigger's work
//! (migration 13), in the statement that records each outcome.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use errand_core::{
    check_workflow, plan_workflow, DepOutput, ErrorRecord, ExistingStep, JobId, JobState,
    NewWorkflow, StepEdge, StoreError, WorkflowError, WorkflowRecord, WorkflowStep,
    WorkflowSummary,
};
use sqlx::{PgConnection, Row};

use crate::copy::{copy_workflow, COPY_FROM};
use crate::error::db;
use crate::row::{decode, COLUMNS};
use crate::sql::to_json;
use crate::store::PgStore;

/// What an insert made due, for the in-process wake-ups after it commits.
#[derive(Debug, Default)]
pub(crate) struct Inserted {
    pub(crate) ids: Vec<JobId>,
    pub(crate) queues: BTreeSet<String>,
    pub(crate) scheduled: bool,
}

impl Inserted {
    pub(crate) fn wake(&self, s: &PgStore) {
        if !s.is_listening() {
            for q in &self.queues {
                s.inner.signals.notify(q);
            }
        }
        if self.scheduled {
            s.inner.signals.notify_scheduled();
        }
    }
}

fn table(s: &PgStore, name: &str) -> String {
    format!("\"{}\".{name}", s.inner.schema)
}

/// Inserts `wf` on `conn`, which must be in a transaction: the existing steps it depends on
/// are locked (`FOR UPDATE`, in id order) until it commits, so none of them can end between
/// the plan and the insert.
pub(crate) async fn insert_on(
    s: &PgStore,
    conn: &mut PgConnection,
    wf: &NewWorkflow,
    now: DateTime<Utc>,
) -> Result<Inserted, StoreError> {
    let external = check_workflow(wf)?;
    let jobs = table(s, "jobs");
    let mut names: Vec<&str> = external.iter().map(String::as_str).collect();
    names.extend(wf.steps.iter().map(|st| st.step.as_str()));
    let lock = format!(
        "SELECT id, step, state FROM {jobs} WHERE workflow_id = $1 AND step = ANY($2) \
         ORDER BY id FOR UPDATE"
    );
    let rows = sqlx::query(&lock)
        .bind(&wf.id)
        .bind(&names)
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
    let workflows = table(s, "workflows");
    if !external.is_empty() && existing.is_empty() {
        let known = format!("SELECT 1 FROM {workflows} WHERE id = $1");
        let found: Option<i32> = sqlx::query_scalar(&known)
            .bind(&wf.id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if found.is_none() {
            return Err(WorkflowError::NoWorkflow(wf.id.clone()).into());
        }
    }
    // Ids first: the plan's edges (and steps cancelled at birth) name them. (The statement
    // `COPY` uses: the sequence named once, not looked up per id — 60 ms for 10,000 ids
    // against 9 — and whether the database takes binary text as UTF-8.)
    let (utf8, mut ids): (bool, Vec<i64>) = sqlx::query_as(&s.inner.sql.copy_ids)
        .bind(wf.steps.len() as i64)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    ids.sort_unstable();
    let plan = plan_workflow(wf, &ids, &existing, now)?;

    let head = format!(
        "INSERT INTO {workflows} (id, name, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO NOTHING"
    );
    sqlx::query(&head)
        .bind(&wf.id)
        .bind(&wf.name)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let mut out = Inserted {
        ids,
        ..Inserted::default()
    };
    if utf8 && plan.steps.len() >= COPY_FROM && copy_workflow(conn, s, wf, &plan, now).await? {
        for p in &plan.steps {
            match p.state {
                JobState::Available => {
                    out.queues.insert(wf.steps[p.index].job.queue.clone());
                }
                JobState::Scheduled => out.scheduled = true,
                _ => {}
            }
        }
    } else {
        insert_rows(conn, s, wf, &plan, now, &mut out).await?;
    }
    finish_insert(conn, s, &plan, now, &mut out).await?;
    Ok(out)
}

/// The plan's rows and edges by statement (arrays unnested).
async fn insert_rows(
    conn: &mut PgConnection,
    s: &PgStore,
    wf: &NewWorkflow,
    plan: &errand_core::WorkflowPlan,
    now: DateTime<Utc>,
    out: &mut Inserted,
) -> Result<(), StoreError> {
    let jobs = table(s, "jobs");
    let n = plan.steps.len();
    let (mut id, mut kind, mut queue, mut args, mut state) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut priority, mut max_attempts, mut run_at, mut finalized, mut errors) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut tags, mut backoff, mut timeout, mut partition, mut step) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut waiting, mut dependents, mut cancelled_by) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for p in &plan.steps {
        let st = &wf.steps[p.index];
        let j = &st.job;
        match p.state {
            JobState::Available => {
                out.queues.insert(j.queue.clone());
            }
            JobState::Scheduled => out.scheduled = true,
            _ => {}
        }
        id.push(p.id);
        kind.push(j.kind.as_str());
        queue.push(j.queue.as_str());
        args.push(j.args.as_str());
        state.push(p.state.as_str());
        priority.push(j.priority);
        max_attempts.push(j.max_attempts);
        run_at.push(j.run_at);
        finalized.push(p.error.as_ref().map(|_| now));
        errors.push(match &p.error {
            Some(m) => to_json(&[ErrorRecord::new(0, now, m.clone())]),
            None => "[]".to_owned(),
        });
        tags.push(to_json(&j.tags));
        backoff.push(j.backoff.as_ref().map(to_json));
        timeout.push(j.timeout_ms);
        partition.push(j.partition_key.as_deref());
        step.push(st.step.as_str());
        waiting.push(p.waiting_on);
        dependents.push(p.has_dependents);
        cancelled_by.push(p.cancelled_by);
    }
    let insert = format!(
        "INSERT INTO {jobs} (id, kind, queue, args, state, priority, max_attempts, run_at, \
         created_at, finalized_at, errors, tags, backoff, timeout_ms, partition_key, \
         workflow_id, step, waiting_on, has_dependents, cancelled_by) \
         SELECT i.id, i.kind, i.queue, i.args::jsonb, i.state, i.priority, i.max_attempts, \
                i.run_at, $19, i.finalized_at, i.errors::jsonb, i.tags::jsonb, \
                i.backoff::jsonb, i.timeout_ms, i.partition_key, $20, i.step, i.waiting_on, \
                i.has_dependents, i.cancelled_by \
         FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int2[], \
                     $7::int4[], $8::timestamptz[], $9::timestamptz[], $10::text[], \
                     $11::text[], $12::text[], $13::int8[], $14::text[], $15::text[], \
                     $16::int4[], $17::bool[], $18::int8[]) \
           WITH ORDINALITY AS i(id, kind, queue, args, state, priority, max_attempts, run_at, \
                                finalized_at, errors, tags, backoff, timeout_ms, \
                                partition_key, step, waiting_on, has_dependents, \
                                cancelled_by, ord) \
         ORDER BY i.ord"
    );
    sqlx::query(&insert)
        .bind(&id)
        .bind(&kind)
        .bind(&queue)
        .bind(&args)
        .bind(&state)
        .bind(&priority)
        .bind(&max_attempts)
        .bind(&run_at)
        .bind(&finalized)
        .bind(&errors)
        .bind(&tags)
        .bind(&backoff)
        .bind(&timeout)
        .bind(&partition)
        .bind(&step)
        .bind(&waiting)
        .bind(&dependents)
        .bind(&cancelled_by)
        .bind(now)
        .bind(&wf.id)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let deps = table(s, "job_deps");
    let edges = format!(
        "INSERT INTO {deps} (parent_id, child_id, ignore_failure, settled) \
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::bool[], $4::bool[])"
    );
    sqlx::query(&edges)
        .bind(plan.edges.iter().map(|e| e.parent).collect::<Vec<_>>())
        .bind(plan.edges.iter().map(|e| e.child).collect::<Vec<_>>())
        .bind(
            plan.edges
                .iter()
                .map(|e| e.ignore_failure)
                .collect::<Vec<_>>(),
        )
        .bind(plan.edges.iter().map(|e| e.settled).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// What follows the rows: existing parents marked, held steps, wake-ups at commit.
async fn finish_insert(
    conn: &mut PgConnection,
    s: &PgStore,
    plan: &errand_core::WorkflowPlan,
    now: DateTime<Utc>,
    out: &mut Inserted,
) -> Result<(), StoreError> {
    let jobs = table(s, "jobs");
    if !plan.new_parents.is_empty() {
        let mark = format!("UPDATE {jobs} SET has_dependents = true WHERE id = ANY($1)");
        sqlx::query(&mark)
            .bind(&plan.new_parents)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    // Existing pending steps that wait for the new ones too (`NewWorkflow::holds`).
    for h in &plan.holds {
        let more = format!("UPDATE {jobs} SET waiting_on = waiting_on + $1 WHERE id = $2");
        sqlx::query(&more)
            .bind(h.more)
            .bind(h.id)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        if let Some((parent, message)) = &h.cancel {
            // A new step it waits for was born cancelled: it is cancelled by an update the
            // failure trigger sees (its dependents follow it), then `cancelled_by` is set
            // apart (an update setting both is one the trigger skips, as the steps its own
            // cascade cancels).
            let cancel = format!(
                "UPDATE {jobs} SET state = 'cancelled', finalized_at = $1, \
                 errors = errors || jsonb_build_array($2::jsonb) \
                 WHERE id = $3 AND state = 'pending'"
            );
            sqlx::query(&cancel)
                .bind(now)
                .bind(to_json(&ErrorRecord::new(0, now, message.clone())))
                .bind(h.id)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            let by = format!("UPDATE {jobs} SET cancelled_by = $1 WHERE id = $2");
            sqlx::query(&by)
                .bind(parent)
                .bind(h.id)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
    }
    // Other processes' producers hear of the steps made available at commit.
    let mut payloads: Vec<&str> = out.queues.iter().map(String::as_str).collect();
    if out.scheduled {
        payloads.push("");
    }
    if !payloads.is_empty() {
        sqlx::query(&s.inner.sql.notify_each)
            .bind(&s.inner.channel)
            .bind(&payloads)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok(())
}

pub(crate) async fn insert(
    s: &PgStore,
    wf: &NewWorkflow,
    now: DateTime<Utc>,
) -> Result<Vec<JobId>, StoreError> {
    let mut tx = s.inner.pool.begin().await.map_err(db)?;
    let done = insert_on(s, &mut tx, wf, now).await?;
    tx.commit().await.map_err(db)?;
    done.wake(s);
    Ok(done.ids)
}

pub(crate) async fn workflow(s: &PgStore, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
    let (jobs, deps, workflows) = (
        table(s, "jobs"),
        table(s, "job_deps"),
        table(s, "workflows"),
    );
    let head_sql = format!("SELECT name, created_at FROM {workflows} WHERE id = $1");
    let head: Option<(String, DateTime<Utc>)> = sqlx::query_as(&head_sql)
        .bind(id)
        .fetch_optional(&s.inner.pool)
        .await
        .map_err(db)?;
    let Some((name, created_at)) = head else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT {COLUMNS}, step, waiting_on, cancelled_by FROM {jobs} \
         WHERE workflow_id = $1 ORDER BY id"
    );
    let rows = sqlx::query(&sql)
        .bind(id)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
    let edges_sql = format!(
        // An edge out of a job whose `has_dependents` was cleared (it completed in an
        // outcome batch, which does not mark its edges: `Sql::finish`) is settled, even if
        // the job was retried by hand since.
        "SELECT d.child_id, d.parent_id, p.step, d.ignore_failure, \
                d.settled OR NOT coalesce(p.has_dependents, true) \
         FROM {jobs} c JOIN {deps} d ON d.child_id = c.id LEFT JOIN {jobs} p ON p.id = d.parent_id \
         WHERE c.workflow_id = $1 ORDER BY d.child_id, d.parent_id"
    );
    let edges: Vec<(i64, i64, Option<String>, bool, bool)> = sqlx::query_as(&edges_sql)
        .bind(id)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
    let n = COLUMNS.split(',').count();
    let mut steps = Vec::with_capacity(rows.len());
    for r in &rows {
        let job = decode(r)?;
        let deps = edges
            .iter()
            .filter(|e| e.0 == job.id)
            .map(|e| StepEdge {
                parent: e.1,
                step: e.2.clone().unwrap_or_default(),
                ignore_failure: e.3,
                settled: e.4,
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
        name,
        created_at,
        steps,
    }))
}

pub(crate) async fn workflows(
    s: &PgStore,
    limit: u32,
    before: Option<&str>,
) -> Result<Vec<WorkflowSummary>, StoreError> {
    let (jobs, workflows) = (table(s, "jobs"), table(s, "workflows"));
    let limit = if limit == 0 { 50 } else { limit };
    let sql = format!(
        "SELECT w.id, w.name, w.created_at, c.states, c.counts FROM {workflows} w \
         CROSS JOIN LATERAL (SELECT array_agg(state) AS states, array_agg(n) AS counts \
                             FROM (SELECT state, count(*) AS n FROM {jobs} \
                                   WHERE workflow_id = w.id GROUP BY state) x) c \
         WHERE w.seq < coalesce((SELECT seq FROM {workflows} WHERE id = $1), 9223372036854775807) \
         ORDER BY w.seq DESC LIMIT $2"
    );
    type Head = (
        String,
        String,
        DateTime<Utc>,
        Option<Vec<String>>,
        Option<Vec<i64>>,
    );
    let rows: Vec<Head> = sqlx::query_as(&sql)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, name, created_at, states, counts) in rows {
        let mut cs = Vec::new();
        for (st, n) in states
            .unwrap_or_default()
            .iter()
            .zip(counts.unwrap_or_default())
        {
            cs.push((StoreError::parse_state(0, st)?, n as u64));
        }
        cs.sort();
        out.push(WorkflowSummary {
            id,
            name,
            created_at,
            counts: cs,
        });
    }
    Ok(out)
}

pub(crate) async fn cancel(s: &PgStore, id: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let jobs = table(s, "jobs");
    let sql = format!(
        // Every step ends here by the operator's hand: `cancelled_by = 0` (no job has id 0)
        // skips the settling trigger, so none is recorded as cancelled by another (a retry
        // of one revives nothing); the next statement clears the mark.
        "WITH c AS (UPDATE {jobs} SET state = 'cancelled', finalized_at = $1, \
                    lease_expires_at = NULL, cancelled_by = 0 \
                    WHERE workflow_id = $2 AND state IN ('pending', 'scheduled', 'available', \
                                                         'running', 'retryable') \
                    RETURNING id, awaited) \
         SELECT count(*), count(pg_notify($3, chr(1) || 'ended')) FILTER (WHERE awaited) FROM c"
    );
    let mut tx = s.inner.pool.begin().await.map_err(db)?;
    let (n, _): (i64, i64) = sqlx::query_as(&sql)
        .bind(now)
        .bind(id)
        .bind(&s.inner.channel)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let clear = format!(
        "UPDATE {jobs} SET cancelled_by = NULL WHERE workflow_id = $1 AND cancelled_by = 0"
    );
    sqlx::query(&clear)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    if n > 0 {
        s.inner.signals.notify_ended();
        s.settled_wake();
    }
    Ok(n as u64)
}

pub(crate) async fn job_step(
    s: &PgStore,
    id: JobId,
) -> Result<Option<(String, String)>, StoreError> {
    let sql = format!(
        "SELECT workflow_id, step FROM {} WHERE id = $1",
        table(s, "jobs")
    );
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(&s.inner.pool)
        .await
        .map_err(db)?;
    Ok(match row {
        Some((Some(w), Some(st))) => Some((w, st)),
        _ => None,
    })
}

pub(crate) async fn dependency_outputs(
    s: &PgStore,
    id: JobId,
) -> Result<Vec<DepOutput>, StoreError> {
    let sql = format!(
        "SELECT p.step, p.id, p.kind, p.state, p.result::text FROM {} d JOIN {} p \
         ON p.id = d.parent_id WHERE d.child_id = $1 ORDER BY p.id",
        table(s, "job_deps"),
        table(s, "jobs")
    );
    type Dep = (Option<String>, i64, String, String, Option<String>);
    let rows: Vec<Dep> = sqlx::query_as(&sql)
        .bind(id)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
    rows.into_iter()
        .map(|(step, pid, kind, state, result)| {
            Ok(DepOutput {
                step: step.unwrap_or_default(),
                id: pid,
                kind,
                state: StoreError::parse_state(pid, &state)?,
                result,
            })
        })
        .collect()
}
