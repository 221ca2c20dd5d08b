//! Claiming: one `UPDATE … FOR UPDATE SKIP LOCKED … RETURNING` takes the next jobs of a
//! queue; a claimed row that cannot be read is discarded with the reason, and the rest of
//! the claim runs.

use chrono::{DateTime, Utc};
use errand_core::{ClaimRequest, JobRow, StoreError};

use crate::error::db;
use crate::row::decode;
use crate::sql::to_json;
use crate::store::PgStore;

pub(crate) async fn claim(s: &PgStore, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError> {
    let lease_until = errand_core::later(req.now, req.lease);
    let rows = sqlx::query(&s.inner.sql.claim)
        .bind(req.now)
        .bind(&req.worker_id)
        .bind(lease_until)
        .bind(&req.queue)
        .bind(i64::from(req.limit))
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
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
