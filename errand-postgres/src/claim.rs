//! Claiming: one `UPDATE … FOR UPDATE SKIP LOCKED … RETURNING` takes the next jobs of a
//! queue; a claimed row that cannot be read is discarded with the reason, and the rest of
//! the claim runs.
//!
//! A metered queue (a per-key limit or a rate) is claimed by another statement, which asks
//! `claim_plan` (migration 6) which jobs to take. The plain statement takes nothing from a
//! metered queue (`claimable` says 0), so a process that has not seen the limit yet cannot
//! take past it: an empty claim looks at the queue's record, and from then on this process
//! claims it metered (every read of the records refreshes what it knows). A queue without
//! metering pays what it paid before (one primary-key probe).
//!
//! A plain claim starts at the queue's floor (`claim_floor.rs`), so that what a held snapshot
//! keeps at the front of the queue is not walked by every claim.

use chrono::{DateTime, Utc};
use errand_core::{ClaimRequest, JobRow, StoreError};

use crate::claim_floor::Key;
use crate::error::db;
use crate::row::{decode, COLUMNS};
use crate::sql::to_json;
use crate::store::PgStore;

pub(crate) async fn claim(s: &PgStore, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError> {
    let metered = &s.inner.metered;
    if metered.contains(&req.queue) {
        return claim_with(s, req, &s.inner.sql.claim_metered, None).await;
    }
    let from = s.inner.floors.get(&req.queue);
    let started = std::time::Instant::now();
    let sql = match from {
        None => &s.inner.sql.claim,
        Some(_) => &s.inner.sql.claim_from,
    };
    let jobs = claim_with(s, req, sql, from).await?;
    let keys: Vec<Key> = jobs.iter().map(Key::of).collect();
    s.inner
        .floors
        .learn(&req.queue, from, started.elapsed(), &keys);
    if jobs.is_empty() && is_metered(s, &req.queue).await? {
        metered.learn(&req.queue, true);
        return claim_with(s, req, &s.inner.sql.claim_metered, None).await;
    }
    Ok(jobs)
}

/// Whether `queue`'s record holds a per-key limit or a rate.
async fn is_metered(s: &PgStore, queue: &str) -> Result<bool, StoreError> {
    sqlx::query_scalar(&s.inner.sql.is_metered)
        .bind(queue)
        .fetch_one(&s.inner.pool)
        .await
        .map_err(db)
}

/// Claims with `sql` (the plain statement, the metered one, or from a floor (`from`): the
/// same parameters, and the floor's after them).
async fn claim_with(
    s: &PgStore,
    req: &ClaimRequest,
    sql: &str,
    from: Option<Key>,
) -> Result<Vec<JobRow>, StoreError> {
    let lease_until = errand_core::later(req.now, req.lease);
    let mut query = sqlx::query(sql)
        .bind(req.now)
        .bind(&req.worker_id)
        .bind(lease_until)
        .bind(&req.queue)
        .bind(i64::from(req.limit))
        .bind(req.held.map(i64::from));
    if let Some(key) = from {
        query = query.bind(key.priority).bind(key.run_at).bind(key.id);
    }
    let mut conn = s.held().await?;
    let rows = query.fetch_all(conn.conn()).await.map_err(db)?;
    conn.back();
    note_steps(s, &rows);
    let (mut jobs, unreadable): (Vec<_>, Vec<_>) = rows
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .partition(|j| j.corrupt.is_none());
    for job in unreadable {
        // On failure the job's lease runs out and the rescuer retries it; it is met
        // again at its next claim. The readable jobs are returned either way.
        if let Err(e) = quarantine(s, &job, req.now).await {
            tracing::warn!(job_id = job.id, error = %e, "could not discard an unreadable job");
        }
    }
    jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
    Ok(jobs)
}

/// Remembers when a claim took a workflow step (the column after [`COLUMNS`]): from then on
/// this process's outcome batches settle completions themselves (`Sql::finish`). Set
/// before the jobs reach an executor, so every batch that ends a step sees it.
fn note_steps(s: &PgStore, rows: &[sqlx::postgres::PgRow]) {
    use sqlx::Row;
    use std::sync::atomic::Ordering;
    if s.inner.steps_claimed.load(Ordering::Relaxed) {
        return;
    }
    let at = COLUMNS.split(',').count();
    if rows
        .iter()
        .any(|r| r.try_get::<bool, _>(at).unwrap_or(true))
    {
        s.inner.steps_claimed.store(true, Ordering::Relaxed);
    }
}

/// Discards a claimed job whose row cannot be read, recording why (see
/// [`JobRow::corrupt`]): it never reaches a worker, and the rest of its claim runs.
async fn quarantine(s: &PgStore, job: &JobRow, now: DateTime<Utc>) -> Result<(), StoreError> {
    let Some(error) = job.unreadable_error(now) else {
        return Ok(());
    };
    tracing::error!(job_id = job.id, error = %error.message, "claimed job cannot be read: discarding it");
    sqlx::query(&s.inner.sql.quarantine)
        .bind(now)
        .bind(to_json(&error))
        .bind(job.id)
        .bind(job.attempt)
        .execute(&s.inner.pool)
        .await
        .map_err(db)?;
    Ok(())
}
