//! Inserting jobs: plain rows on the store's own connection, keyed rows one by one in a
//! transaction (the keyed statement is shared with the application's transactions, `tx.rs`).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use errand_core::{InsertResult, JobState, NewJob, StoreError};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::TransactionBehavior;

use crate::direct::{insert_rows, lite};
use crate::error::db;
use crate::row::micros;
use crate::sql::to_json;
use crate::store::{SqliteStore, Writer};

/// The columns a job without keys sets (the rest take their defaults).
/// A new job's id, the first of a statement's: above the highest id ever deleted
/// (`errand_id_floor`, migration 13) when no job above it is left, otherwise `NULL` — SQLite's
/// own `max(id) + 1`. Ids are never reused, without AUTOINCREMENT's write per insert.
pub(crate) const FIRST_ID: &str =
    "(SELECT CASE WHEN f.n > coalesce((SELECT max(id) FROM errand_jobs), 0) \
     THEN f.n + 1 END FROM errand_id_floor f)";

const COLUMNS: [&str; 11] = [
    "kind",
    "queue",
    "args",
    "state",
    "priority",
    "max_attempts",
    "run_at",
    "created_at",
    "tags",
    "backoff",
    "timeout_ms",
];

/// `j`'s values for [`COLUMNS`], its texts borrowed (a payload is not copied).
fn row(j: &NewJob, now: DateTime<Utc>) -> Vec<ToSqlOutput<'_>> {
    fn text(t: &str) -> ToSqlOutput<'_> {
        ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes()))
    }
    let owned = ToSqlOutput::Owned;
    vec![
        text(&j.kind),
        text(&j.queue),
        text(&j.args),
        text(j.state_at(now).as_str()),
        owned(Value::Integer(i64::from(j.priority))),
        owned(Value::Integer(i64::from(j.max_attempts))),
        owned(Value::Integer(micros(j.run_at))),
        owned(Value::Integer(micros(now))),
        owned(Value::Text(to_json(&j.tags))),
        owned(
            j.backoff
                .as_ref()
                .map_or(Value::Null, |b| Value::Text(to_json(b))),
        ),
        owned(j.timeout_ms.map_or(Value::Null, Value::Integer)),
    ]
}

pub(crate) async fn insert(
    s: &SqliteStore,
    jobs: Vec<NewJob>,
    now: DateTime<Utc>,
) -> Result<Vec<InsertResult>, StoreError> {
    let w = s.writer().await?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    // Keys (unique or partition) take the statement that writes every column.
    if jobs
        .iter()
        .all(|j| j.unique_key.is_none() && j.partition_key.is_none())
    {
        return plain(s, &w, jobs, now).await;
    }
    let mut out = Vec::with_capacity(jobs.len());
    let mut woken = BTreeSet::new();
    let mut scheduled = false;
    let mut tx = w.begin().await?;
    for job in &jobs {
        let result = crate::tx::insert_keyed(&mut tx, job, now).await?;
        if result.inserted {
            match job.state_at(now) {
                JobState::Available => {
                    woken.insert(job.queue.as_str());
                }
                _ => scheduled = true,
            }
        }
        out.push(result);
    }
    tx.commit().await.map_err(db)?;
    for q in woken {
        s.signals.notify(q);
    }
    if scheduled {
        s.signals.notify_scheduled();
    }
    Ok(out)
}

/// Jobs without unique keys, on the store's own connection (`direct`): one `INSERT` for a
/// single job; a batch is one transaction of prepared statements of 32 rows each
/// (`direct::insert_rows`: a statement per row spent a fifth of the time starting them).
async fn plain(
    s: &SqliteStore,
    w: &Writer<'_>,
    jobs: Vec<NewJob>,
    now: DateTime<Utc>,
) -> Result<Vec<InsertResult>, StoreError> {
    let mut woken = BTreeSet::new();
    let mut scheduled = false;
    for j in &jobs {
        match j.state_at(now) {
            JobState::Available => {
                woken.insert(j.queue.clone());
            }
            _ => scheduled = true,
        }
    }
    let rows = jobs.len();
    let write = move |c: &mut rusqlite::Connection| {
        let rows = jobs.iter().map(|j| row(j, now)).collect();
        if jobs.len() == 1 {
            return insert_rows(c, "errand_jobs", &COLUMNS, rows, Some(FIRST_ID));
        }
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(lite)?;
        let ids = insert_rows(&tx, "errand_jobs", &COLUMNS, rows, Some(FIRST_ID))?;
        tx.commit().map_err(lite)?;
        Ok(ids)
    };
    let ids = w.run(rows, write).await?;
    for q in &woken {
        s.signals.notify(q);
    }
    if scheduled {
        s.signals.notify_scheduled();
    }
    Ok(ids
        .into_iter()
        .map(|id| InsertResult { id, inserted: true })
        .collect())
}
