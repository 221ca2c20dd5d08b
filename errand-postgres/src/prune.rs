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
    let (n, workflows, lowered, _): (i64, Option<Vec<String>>, i64, i64) =
        sqlx::query_as(&s.inner.sql.prune)
            .bind(before)
            .bind(i64::from(limit))
            .bind(state.as_str())
            .bind(&s.inner.channel)
            .fetch_one(&s.inner.pool)
            .await
            .map_err(db)?;
    if lowered > 0 {
        s.settled_wake();
    }
    if let Some(ids) = workflows {
        // The workflows whose last steps went: their records go too.
        let schema = &s.inner.schema;
        let sql = format!(
            "DELETE FROM \"{schema}\".workflows w WHERE w.id = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM \"{schema}\".jobs j WHERE j.workflow_id = w.id)"
        );
        sqlx::query(&sql)
            .bind(&ids)
            .execute(&s.inner.pool)
            .await
            .map_err(db)?;
    }
    Ok(n as u64)
}
