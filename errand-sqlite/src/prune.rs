//! Pruning: final jobs older than the retention, deleted in bounded batches.

use chrono::{DateTime, Utc};
use errand_core::{JobState, StoreError};

use crate::error::db;
use crate::row::micros;
use crate::sql::FINAL;
use crate::store::SqliteStore;

/// Deletes up to `?3` jobs in final state `?1` finalized before `?2`, oldest first (the
/// final-states predicate repeated so the index on them serves).
pub(crate) fn prune_sql() -> String {
    format!(
        "DELETE FROM errand_jobs WHERE id IN (SELECT id FROM errand_jobs \
         WHERE {FINAL} AND state = ? AND finalized_at < ? ORDER BY finalized_at LIMIT ?)"
    )
}

pub(crate) async fn prune(
    s: &SqliteStore,
    state: JobState,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<u64, StoreError> {
    let w = s.writer().await?;
    let res = sqlx::query(&prune_sql())
        .bind(state.as_str())
        .bind(micros(before))
        .bind(limit)
        .execute(w.pool())
        .await
        .map_err(db)?;
    Ok(res.rows_affected())
}
