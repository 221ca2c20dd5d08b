//! Inserting jobs: plain rows in multi-row statements, keyed rows one by one in a
//! transaction (the keyed statement is shared with the application's transactions, `tx.rs`).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use errand_core::{InsertResult, JobState, NewJob, StoreError};
use sqlx::sqlite::SqliteArguments;
use sqlx::Arguments;

use crate::error::db;
use crate::row::micros;
use crate::sql::to_json;
use crate::store::{SqliteStore, Writer};

/// Jobs per batch insert statement: eleven parameters each, well under SQLite's limit.
const INSERT_ROWS_PER_STATEMENT: usize = 512;

/// Inserts `n` jobs, each bound as `kind, queue, args, state, priority, max_attempts, run_at,
/// created_at, tags, backoff, timeout_ms`, in order; returns their ids.
fn insert_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO errand_jobs (kind, queue, args, state, priority, max_attempts, run_at, \
         created_at, tags, backoff, timeout_ms) VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    sql.push_str(" RETURNING id");
    sql
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
        return plain(s, &w, &jobs, now).await;
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

/// Jobs without unique keys: one transaction of multi-row `INSERT … VALUES` statements
/// (chunks of 512, then powers of two, so every statement text stays prepared), each
/// returning its ids; a single job is one plain `INSERT`.
async fn plain(
    s: &SqliteStore,
    w: &Writer<'_>,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<Vec<InsertResult>, StoreError> {
    if let [j] = jobs {
        // The single-enqueue hot path: plain VALUES, no JSON round trip.
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO errand_jobs (kind, queue, args, state, priority, max_attempts, \
             run_at, created_at, tags, backoff, timeout_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&j.kind)
        .bind(&j.queue)
        .bind(&j.args)
        .bind(j.state_at(now).as_str())
        .bind(j.priority)
        .bind(j.max_attempts)
        .bind(micros(j.run_at))
        .bind(micros(now))
        .bind(to_json(&j.tags))
        .bind(j.backoff.as_ref().map(to_json))
        .bind(j.timeout_ms)
        .fetch_all(w.pool())
        .await
        .map_err(db)
        .and_then(crate::sql::one)?;
        match j.state_at(now) {
            JobState::Available => s.signals.notify(&j.queue),
            _ => s.signals.notify_scheduled(),
        }
        return Ok(vec![InsertResult { id, inserted: true }]);
    }
    // Chunks of power-of-two sizes (512, 256, … 1), so each statement text stays
    // prepared, in one transaction: the batch is atomic.
    let mut ids: Vec<i64> = Vec::with_capacity(jobs.len());
    let mut tx = w.begin().await?;
    let mut rest = jobs;
    while !rest.is_empty() {
        let n = if rest.len() >= INSERT_ROWS_PER_STATEMENT {
            INSERT_ROWS_PER_STATEMENT
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut args = SqliteArguments::default();
        for j in chunk {
            args.add(j.kind.as_str()).expect("bind");
            args.add(j.queue.as_str()).expect("bind");
            args.add(j.args.as_str()).expect("bind");
            args.add(j.state_at(now).as_str()).expect("bind");
            args.add(j.priority).expect("bind");
            args.add(j.max_attempts).expect("bind");
            args.add(micros(j.run_at)).expect("bind");
            args.add(micros(now)).expect("bind");
            args.add(to_json(&j.tags)).expect("bind");
            args.add(j.backoff.as_ref().map(to_json)).expect("bind");
            args.add(j.timeout_ms).expect("bind");
        }
        let rows: Vec<(i64,)> = sqlx::query_as_with(&insert_sql(n), args)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        ids.extend(rows.into_iter().map(|(id,)| id));
    }
    tx.commit().await.map_err(db)?;
    // AUTOINCREMENT ids follow insertion order, which follows the input.
    ids.sort_unstable();
    let mut woken = BTreeSet::new();
    for j in jobs
        .iter()
        .filter(|j| j.state_at(now) == JobState::Available)
    {
        woken.insert(j.queue.as_str());
    }
    for q in woken {
        s.signals.notify(q);
    }
    if jobs.iter().any(|j| j.state_at(now) == JobState::Scheduled) {
        s.signals.notify_scheduled();
    }
    Ok(ids
        .into_iter()
        .map(|id| InsertResult { id, inserted: true })
        .collect())
}
