//! Claiming: one `UPDATE … RETURNING` takes the next jobs of a queue; a claimed row that
//! cannot be read is discarded with the reason, and the rest of the claim runs.

use chrono::{DateTime, Utc};
use errand_core::{ClaimRequest, JobRow, StoreError};

use crate::error::db;
use crate::row::{decode_claimed, micros, CLAIMED};
use crate::sql::to_json;
use crate::store::SqliteStore;

/// How many jobs a claim of queue `?4` wanting `?5` may take: none while paused, the free
/// slots under a limit, `?5` for a queue without a record (one primary-key probe).
const CLAIMABLE: &str = "coalesce((SELECT CASE WHEN q.paused THEN 0 WHEN q.max_running IS NULL \
     THEN ?5 ELSE max(0, min(?5, q.max_running - (SELECT count(*) FROM errand_jobs r \
     WHERE r.state = 'running' AND r.queue = ?4))) END \
     FROM errand_queues q WHERE q.name = ?4), ?5)";

pub(crate) async fn claim(s: &SqliteStore, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError> {
    let w = s.writer().await?;
    let lease_until = errand_core::later(req.now, req.lease);
    // One statement: SQLite takes the write lock for it, so claims never overlap (and a
    // limit's count of running jobs cannot change under it). Numbered parameters
    // throughout: the queue is used thrice (sqlx binds unnumbered ones in turn).
    let sql = format!(
        "UPDATE errand_jobs SET state = 'running', attempt = attempt + 1, attempted_at = ?1, \
         attempted_by = ?2, lease_expires_at = ?3 \
         WHERE id IN (SELECT id FROM errand_jobs WHERE state = 'available' AND queue = ?4 \
                      ORDER BY priority, run_at, id LIMIT {CLAIMABLE}) \
         RETURNING {CLAIMED}"
    );
    let rows: Vec<(String,)> = sqlx::query_as(&sql)
        .bind(micros(req.now))
        .bind(&req.worker_id)
        .bind(micros(lease_until))
        .bind(&req.queue)
        .bind(req.limit)
        .fetch_all(w.pool())
        .await
        .map_err(db)?;
    // Decoding needs no turn: let the completer write meanwhile.
    drop(w);
    let (mut jobs, unreadable): (Vec<_>, Vec<_>) = rows
        .iter()
        .map(|(text,)| decode_claimed(text, req, lease_until))
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
/// [`JobRow::corrupt`]): it never reaches a worker, and the rest of its claim runs. The
/// history is appended to when it is a JSON array, started afresh when the history
/// itself is what is unreadable (the problem quotes what it held).
async fn quarantine(s: &SqliteStore, job: &JobRow, now: DateTime<Utc>) -> Result<(), StoreError> {
    let Some(error) = job.unreadable_error(now) else {
        return Ok(());
    };
    tracing::error!(job_id = job.id, error = %error.message, "claimed job cannot be read: discarding it");
    let error = to_json(&error);
    let w = s.writer().await?;
    sqlx::query(
        "UPDATE errand_jobs SET state = 'discarded', finalized_at = ?, lease_expires_at = NULL, \
         errors = CASE WHEN json_valid(errors) AND json_type(errors) = 'array' \
                       THEN json_insert(errors, '$[#]', json(?)) ELSE json_array(json(?)) END \
         WHERE id = ? AND state = 'running' AND attempt = ?",
    )
    .bind(micros(now))
    .bind(&error)
    .bind(&error)
    .bind(job.id)
    .bind(job.attempt)
    .execute(w.pool())
    .await
    .map_err(db)?;
    Ok(())
}
