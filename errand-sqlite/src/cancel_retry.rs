//! Operator actions on one job: cancel it, retry it now, or delete it.

use chrono::{DateTime, Utc};
use errand_core::{CancelResult, DeleteResult, JobId, JobRow, StoreError};

use crate::error::db;
use crate::list::fetch;
use crate::row::{decode, micros, COLUMNS};
use crate::sql::NON_FINAL;
use crate::store::SqliteStore;
use errand_core::UNIQUE_HOLDS_SQL;

pub(crate) async fn cancel(
    s: &SqliteStore,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<CancelResult, StoreError> {
    let w = s.writer().await?;
    let sql = format!(
        "UPDATE errand_jobs SET state = 'cancelled', finalized_at = ?, lease_expires_at = NULL, \
         has_dependents = has_dependents \
         WHERE id = ? AND {NON_FINAL} RETURNING {COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(micros(now))
        .bind(id)
        .fetch_all(w.pool())
        .await
        .map_err(db)?
        .into_iter()
        .next();
    match row {
        Some(row) => {
            s.signals.notify_ended();
            s.settled_wake();
            Ok(CancelResult::Cancelled(decode(&row)?))
        }
        None => Ok(match fetch(s, id).await? {
            Some(row) => CancelResult::AlreadyFinal(row),
            None => CancelResult::NotFound,
        }),
    }
}

pub(crate) async fn retry_now(
    s: &SqliteStore,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<Option<JobRow>, StoreError> {
    let w = s.writer().await?;
    let mut tx = w.begin().await?;
    let key: Option<String> = sqlx::query_scalar("SELECT unique_key FROM errand_jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .flatten();
    if key.is_some() {
        crate::tx::release_expired(&mut tx, key.as_deref(), Some(id), now).await?;
    }
    // A final job whose unique key another job holds stays as it is. (The columns in the
    // subquery are `o`'s: names resolve to the innermost table first.)
    let sql = format!(
        // A workflow step whose dependencies have not all settled waits for them again.
        "UPDATE errand_jobs SET \
           state = CASE WHEN waiting_on > 0 THEN 'pending' ELSE 'available' END, \
         run_at = ?, finalized_at = NULL, \
         lease_expires_at = NULL, max_attempts = max(max_attempts, attempt + 1), \
         result = NULL, progress = NULL, has_dependents = has_dependents \
         WHERE id = ? AND state != 'running' AND state != 'pending' \
         AND (unique_key IS NULL OR NOT EXISTS \
           (SELECT 1 FROM errand_jobs o WHERE o.unique_key = errand_jobs.unique_key \
            AND o.id != errand_jobs.id AND {UNIQUE_HOLDS_SQL})) \
         RETURNING queue, state"
    );
    let queue: Option<(String, String)> = sqlx::query_as(&sql)
        .bind(micros(now))
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .into_iter()
        .next();
    tx.commit().await.map_err(db)?;
    if let Some((q, state)) = &queue {
        if state == "available" {
            s.signals.notify(q);
        }
        s.settled_wake();
    }
    fetch(s, id).await
}

/// The statement that stops counting edges out of jobs that are going (deleted or pruned):
/// each dependent `id` of `counts` (`SELECT id, k`, reading `?1`) waits for `k` fewer, and
/// one left pending with nothing to wait for is released at `?2` (µs) as a settled
/// dependency releases it (migration 12): available, or scheduled when due later.
pub(crate) fn uncount_sql(counts: &str) -> String {
    format!(
        "UPDATE errand_jobs SET waiting_on = waiting_on - n.k, \
         state = CASE WHEN state = 'pending' AND waiting_on = n.k \
                      THEN CASE WHEN run_at > ?2 THEN 'scheduled' ELSE 'available' END \
                      ELSE state END, \
         run_at = CASE WHEN state = 'pending' AND waiting_on = n.k AND run_at < ?2 \
                       THEN ?2 ELSE run_at END \
         FROM ({counts}) AS n WHERE errand_jobs.id = n.id"
    )
}

/// Deletes a job that is not running. A workflow step that has not ended first ends for its
/// dependents as a cancellation would (the failure trigger cancels them, or releases them on
/// `ignore_failure` edges); then its edges go, each unsettled one out of it no longer
/// counted by its dependent (one its end cancelled runs without it if retried by hand, one
/// already waiting again is released: [`uncount_sql`]). An edge out of a job whose
/// `has_dependents` is cleared was counted when it completed.
pub(crate) async fn delete(s: &SqliteStore, id: JobId) -> Result<DeleteResult, StoreError> {
    let w = s.writer().await?;
    let mut tx = w.pool().begin().await.map_err(db)?;
    let now = micros(Utc::now());
    let ended = sqlx::query(
        "UPDATE errand_jobs SET state = 'cancelled', finalized_at = ?, \
         has_dependents = has_dependents \
         WHERE id = ? AND has_dependents = 1 \
           AND state IN ('pending', 'available', 'scheduled', 'retryable')",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected()
        > 0;
    let lowered = sqlx::query(&uncount_sql(
        "SELECT e.child_id AS id, count(*) AS k FROM errand_job_deps e \
         JOIN errand_jobs p ON p.id = e.parent_id \
         WHERE e.parent_id = ?1 AND e.settled = 0 AND p.has_dependents = 1 \
           AND p.state != 'running' \
         GROUP BY e.child_id",
    ))
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected()
        > 0;
    sqlx::query(
        "DELETE FROM errand_job_deps WHERE (parent_id = ?1 OR child_id = ?1) \
         AND EXISTS (SELECT 1 FROM errand_jobs WHERE id = ?1 AND state != 'running')",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let sql =
        format!("DELETE FROM errand_jobs WHERE id = ? AND state != 'running' RETURNING {COLUMNS}");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .into_iter()
        .next();
    tx.commit().await.map_err(db)?;
    drop(w);
    if ended || lowered {
        s.settled_wake();
    }
    match row {
        Some(row) => Ok(DeleteResult::Deleted(decode(&row)?)),
        None => Ok(match fetch(s, id).await? {
            Some(row) => DeleteResult::Running(row),
            None => DeleteResult::NotFound,
        }),
    }
}
