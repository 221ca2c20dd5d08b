//! Pruning: final jobs older than the retention, deleted in bounded batches that skip
//! rows other transactions hold.

use chrono::{DateTime, Utc};
use errand_core::{JobState, StoreError};

use crate::error::db;
use crate::store::PgStore;

pub(crate) async fn prune(
    s: &PgStore,
    state: JobState,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<u64, StoreError> {
    let res = sqlx::query(&s.inner.sql.prune)
        .bind(before)
        .bind(i64::from(limit))
        .bind(state.as_str())
        .execute(&s.inner.pool)
        .await
        .map_err(db)?;
    Ok(res.rows_affected())
}
