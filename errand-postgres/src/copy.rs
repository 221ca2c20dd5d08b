//! Large batches of jobs without keys by `COPY … FROM STDIN (FORMAT binary)`: the fastest way
//! into a Postgres table, twice the rows per second of a multi-row `INSERT` of the same
//! jobs. The ids are taken from the table's sequence first (one round trip), so the caller
//! gets them in input order as from the statement path; the copy and the wake-ups run in a
//! transaction of their own (a savepoint inside the application's), all or nothing.

use chrono::{DateTime, TimeZone, Utc};
use errand_core::{ErrorRecord, InsertResult, NewJob, NewWorkflow, StoreError, WorkflowPlan};
use sqlx::{Connection, PgConnection};

use crate::error::db;
use crate::insert::{payloads, wake_ups, Inserted};
use crate::sql::to_json;
use crate::store::PgStore;

/// Batches of at least this many jobs without keys are copied.
pub(crate) const COPY_FROM: usize = 5_000;

/// Copies `jobs` (none with a unique or partition key). `None` when the database's encoding
/// is not UTF-8 (binary `COPY` sends text as is): the caller inserts them by statement.
pub(crate) async fn copy_plain(
    s: &PgStore,
    conn: &mut PgConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<Option<Inserted>, StoreError> {
    let n = i64::try_from(jobs.len()).unwrap_or(i64::MAX);
    let (utf8, mut ids): (bool, Vec<i64>) = sqlx::query_as(&s.inner.sql.copy_ids)
        .bind(n)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    if !utf8 {
        return Ok(None);
    }
    ids.sort_unstable();
    // Jobs with the default tags, backoff and timeout leave those columns to their defaults.
    let lean = jobs
        .iter()
        .all(|j| j.tags.is_empty() && j.backoff.is_none() && j.timeout_ms.is_none());
    let Some(data) = encode(jobs, &ids, now, lean) else {
        return Ok(None);
    };
    let (woken, scheduled) = wake_ups(jobs, now);
    let wake = payloads(&woken, scheduled);
    let mut tx = conn.begin().await.map_err(db)?;
    let sql = if lean {
        &s.inner.sql.copy_in_lean
    } else {
        &s.inner.sql.copy_in
    };
    let mut copy = tx.copy_in_raw(sql).await.map_err(db)?;
    copy.send(data).await.map_err(db)?;
    copy.finish().await.map_err(db)?;
    sqlx::query(&s.inner.sql.notify_each)
        .bind(&s.inner.channel)
        .bind(wake)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Some(Inserted {
        results: ids
            .into_iter()
            .map(|id| InsertResult { id, inserted: true })
            .collect(),
        woken,
        scheduled,
    }))
}

/// Copies a workflow's planned rows and edges (`COPY … FROM STDIN (FORMAT binary)`, on
/// `conn`, inside the insert's transaction): for 10,000 steps about half the time of the
/// statements with unnested arrays. `false` if a value is longer than a field can say: the
/// caller inserts by statement.
pub(crate) async fn copy_workflow(
    conn: &mut PgConnection,
    s: &PgStore,
    wf: &NewWorkflow,
    plan: &WorkflowPlan,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let (Some(rows), Some(edges)) = (encode_steps(wf, plan, now), encode_edges(plan)) else {
        return Ok(false);
    };
    let schema = &s.inner.schema;
    let steps_sql = format!(
        "COPY \"{schema}\".jobs (id, kind, queue, args, state, priority, max_attempts, run_at, \
         created_at, finalized_at, errors, tags, backoff, timeout_ms, partition_key, \
         workflow_id, step, waiting_on, has_dependents, cancelled_by) FROM STDIN (FORMAT binary)"
    );
    let edges_sql = format!(
        "COPY \"{schema}\".job_deps (parent_id, child_id, ignore_failure, settled) \
         FROM STDIN (FORMAT binary)"
    );
    for (sql, data) in [(steps_sql, rows), (edges_sql, edges)] {
        let mut copy = conn.copy_in_raw(&sql).await.map_err(db)?;
        copy.send(data).await.map_err(db)?;
        copy.finish().await.map_err(db)?;
    }
    Ok(true)
}

/// A binary `COPY` stream's header.
fn header(capacity: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(capacity);
    b.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    b.extend_from_slice(&0_i32.to_be_bytes()); // flags
    b.extend_from_slice(&0_i32.to_be_bytes()); // header extension length
    b
}

fn encode_steps(wf: &NewWorkflow, plan: &WorkflowPlan, now: DateTime<Utc>) -> Option<Vec<u8>> {
    let per_row = 200
        + wf.steps
            .first()
            .map_or(0, |s| s.job.args.len() + s.step.len());
    let mut b = header(plan.steps.len() * per_row);
    let created = micros(now).to_be_bytes();
    for p in &plan.steps {
        let step = &wf.steps[p.index];
        let j = &step.job;
        b.extend_from_slice(&20_i16.to_be_bytes());
        field(&mut b, &p.id.to_be_bytes())?;
        field(&mut b, j.kind.as_bytes())?;
        field(&mut b, j.queue.as_bytes())?;
        jsonb(&mut b, &j.args)?;
        field(&mut b, p.state.as_str().as_bytes())?;
        field(&mut b, &j.priority.to_be_bytes())?;
        field(&mut b, &j.max_attempts.to_be_bytes())?;
        field(&mut b, &micros(j.run_at).to_be_bytes())?;
        field(&mut b, &created)?;
        match &p.error {
            Some(m) => {
                field(&mut b, &created)?;
                jsonb(&mut b, &to_json(&[ErrorRecord::new(0, now, m.clone())]))?;
            }
            None => {
                null(&mut b);
                jsonb(&mut b, "[]")?;
            }
        }
        jsonb(&mut b, &to_json(&j.tags))?;
        match &j.backoff {
            Some(backoff) => jsonb(&mut b, &to_json(backoff))?,
            None => null(&mut b),
        }
        match j.timeout_ms {
            Some(ms) => field(&mut b, &ms.to_be_bytes())?,
            None => null(&mut b),
        }
        match &j.partition_key {
            Some(k) => field(&mut b, k.as_bytes())?,
            None => null(&mut b),
        }
        field(&mut b, wf.id.as_bytes())?;
        field(&mut b, step.step.as_bytes())?;
        field(&mut b, &p.waiting_on.to_be_bytes())?;
        field(&mut b, &[u8::from(p.has_dependents)])?;
        match p.cancelled_by {
            Some(id) => field(&mut b, &id.to_be_bytes())?,
            None => null(&mut b),
        }
    }
    b.extend_from_slice(&(-1_i16).to_be_bytes());
    Some(b)
}

fn encode_edges(plan: &WorkflowPlan) -> Option<Vec<u8>> {
    let mut b = header(19 + plan.edges.len() * 36);
    for e in &plan.edges {
        b.extend_from_slice(&4_i16.to_be_bytes());
        field(&mut b, &e.parent.to_be_bytes())?;
        field(&mut b, &e.child.to_be_bytes())?;
        field(&mut b, &[u8::from(e.ignore_failure)])?;
        field(&mut b, &[u8::from(e.settled)])?;
    }
    b.extend_from_slice(&(-1_i16).to_be_bytes());
    Some(b)
}

/// The binary `COPY` stream of `jobs` with `ids`, in the column order of `Sql::copy_in` (or,
/// `lean`, of `Sql::copy_in_lean`); `None` if a value is longer than a field can say (2 GiB).
fn encode(jobs: &[NewJob], ids: &[i64], now: DateTime<Utc>, lean: bool) -> Option<Vec<u8>> {
    let mut b = header(jobs.len() * (160 + jobs.first().map_or(0, |j| j.args.len())));
    for (job, id) in jobs.iter().zip(ids) {
        b.extend_from_slice(&(if lean { 9_i16 } else { 12 }).to_be_bytes());
        field(&mut b, &id.to_be_bytes())?;
        field(&mut b, job.kind.as_bytes())?;
        field(&mut b, job.queue.as_bytes())?;
        jsonb(&mut b, &job.args)?;
        field(&mut b, job.state_at(now).as_str().as_bytes())?;
        field(&mut b, &job.priority.to_be_bytes())?;
        field(&mut b, &job.max_attempts.to_be_bytes())?;
        field(&mut b, &micros(job.run_at).to_be_bytes())?;
        field(&mut b, &micros(now).to_be_bytes())?;
        if lean {
            continue;
        }
        jsonb(&mut b, &to_json(&job.tags))?;
        match &job.backoff {
            Some(backoff) => jsonb(&mut b, &to_json(backoff))?,
            None => null(&mut b),
        }
        match job.timeout_ms {
            Some(ms) => field(&mut b, &ms.to_be_bytes())?,
            None => null(&mut b),
        }
    }
    b.extend_from_slice(&(-1_i16).to_be_bytes());
    Some(b)
}

fn field(b: &mut Vec<u8>, value: &[u8]) -> Option<()> {
    b.extend_from_slice(&i32::try_from(value.len()).ok()?.to_be_bytes());
    b.extend_from_slice(value);
    Some(())
}

/// `jsonb`'s binary form: version 1, then the JSON text (the server parses and checks it).
fn jsonb(b: &mut Vec<u8>, json: &str) -> Option<()> {
    b.extend_from_slice(&i32::try_from(json.len() + 1).ok()?.to_be_bytes());
    b.push(1);
    b.extend_from_slice(json.as_bytes());
    Some(())
}

fn null(b: &mut Vec<u8>) {
    b.extend_from_slice(&(-1_i32).to_be_bytes());
}

/// `timestamptz`'s binary form: microseconds since 2000-01-01 UTC.
fn micros(t: DateTime<Utc>) -> i64 {
    let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    (t - epoch).num_microseconds().unwrap_or(i64::MAX)
}
