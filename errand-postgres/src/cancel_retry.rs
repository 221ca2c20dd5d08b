//! Operator actions on one job: cancel it, retry it now, or delete it.

use chrono::{DateTime, Utc};
use errand_core::{CancelResult, DeleteResult, JobId, JobRow, StoreError};

use crate::error::db;
use crate::list::fetch;
use crate::row::decode;
use crate::store::PgStore;

pub(crate) async fn cancel(
    s: &PgStore,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<CancelResult, StoreError> {
    let row = sqlx::query(&s.inner.sql.cancel)
        .bind(now)
        .bind(id)
        .bind(&s.inner.channel)
        .fetch_optional(&s.inner.pool)
        .await
        .map_err(db)?;
    match row {
        Some(row) => {
            s.inner.signals.notify_ended();
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
    s: &PgStore,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<Option<JobRow>, StoreError> {
    // A finished twin past its uniqueness period holds the key no more: let go of it first.
    sqlx::query(&s.inner.sql.release_unique_of)
        .bind(id)
        .bind(now)
        .execute(&s.inner.pool)
        .await
        .map_err(db)?;
    let queue: Option<Option<String>> = sqlx::query_scalar(&s.inner.sql.retry)
        .bind(now)
        .bind(id)
        .bind(&s.inner.channel)
        .fetch_optional(&s.inner.pool)
        .await
        .map_err(db)?;
    if let Some(Some(q)) = &queue {
        s.inner.signals.notify(q);
    }
    if queue.is_some() {
        s.settled_wake();
    }
    fetch(s, id).await
}

/// Deletes a job that is not running. A workflow step that has not ended first ends for its
/// dependents as a cancellation would (migration 13's trigger cancels them, or releases them
/// on `ignore_failure` edges); then its edges go, each unsettled one out of it no longer
/// counted by its dependent (one its end cancelled runs without it if retried by hand).
pub(crate) async fn delete(s: &PgStore, id: JobId) -> Result<DeleteResult, StoreError> {
    let mut tx = s.inner.pool.begin().await.map_err(db)?;
    let ended = sqlx::query(&s.inner.sql.delete_ends_step)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
        > 0;
    let (lowered, _, _): (i64, i64, i64) = sqlx::query_as(&s.inner.sql.delete_edges)
        .bind(id)
        .bind(&s.inner.channel)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let row = sqlx::query(&s.inner.sql.delete)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    if ended || lowered > 0 {
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
