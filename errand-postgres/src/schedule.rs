//! Scheduling: scheduled and retryable jobs that are due become available, notified.

use chrono::{DateTime, Utc};
use errand_core::{PromoteReport, StoreError};
use sqlx::Row;

use crate::error::db;
use crate::store::PgStore;

pub(crate) async fn promote_due(
    s: &PgStore,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<PromoteReport, StoreError> {
    let row = sqlx::query(&s.inner.sql.promote)
        .bind(now)
        .bind(i64::from(limit))
        .bind(&s.inner.channel)
        .fetch_one(&s.inner.pool)
        .await
        .map_err(db)?;
    let queues: Vec<String> = row.try_get(0).map_err(db)?;
    let counts: Vec<i64> = row.try_get(1).map_err(db)?;
    let later: Option<DateTime<Utc>> = row.try_get(2).map_err(db)?;
    let promoted = counts.iter().sum::<i64>() as u64;
    for q in &queues {
        s.inner.signals.notify(q);
    }
    Ok(PromoteReport {
        promoted,
        queues,
        next_due: if promoted == u64::from(limit) {
            Some(now)
        } else {
            later
        },
    })
}
