//! Pruning: final jobs older than the retention, deleted in bounded batches.

use chrono::{DateTime, Utc};
use errand_core::StoreError;

use crate::error::db;
use crate::row::micros;
use crate::sql::FINAL;
use crate::store::SqliteStore;

/// Deletes up to `?2` final jobs finalized before `?1`, oldest first.
pub(crate) fn prune_sql() -> String {
    format!(
        "DELETE FROM errand_jobs WHERE id IN (SELECT id FROM errand_jobs \
         WHERE {FINAL} AND finalized_at < ? ORDER BY finalized_at LIMIT ?)"
    )
}

pub(crate) async fn prune(
    s: &SqliteStore,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<u64, StoreError> {
    let w = s.writer().await?;
    let res = sqlx::query(&prune_sql())
        .bind(micros(before))
        .bind(limit)
        .execute(w.pool())
        .await
        .map_err(db)?;
    Ok(res.rows_affected())
}
