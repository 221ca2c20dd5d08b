//! Queue records: pause and resume, read by every worker's queue watcher (woken by `NOTIFY`)
//! and by the claim itself.

use chrono::{DateTime, Utc};
use errand_core::{QueueRecord, StoreError};
use sqlx::Row;

use crate::error::db;
use crate::sql::CONTROLS_PAYLOAD;
use crate::store::PgStore;

pub(crate) async fn set_paused(
    s: &PgStore,
    queue: &str,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<QueueRecord, StoreError> {
    errand_core::check_queue_name(queue)?;
    let row = sqlx::query(&s.inner.sql.set_paused)
        .bind(queue)
        .bind(paused)
        .bind(now)
        .bind(&s.inner.channel)
        .bind(CONTROLS_PAYLOAD)
        .fetch_one(&s.inner.pool)
        .await
        .map_err(db)?;
    // This process's watchers and producers, at once (the NOTIFY reaches the others).
    s.inner.signals.notify_controls();
    if !paused {
        s.inner.signals.notify(queue);
    }
    record(&row)
}

pub(crate) async fn queues(s: &PgStore) -> Result<Vec<QueueRecord>, StoreError> {
    sqlx::query(&s.inner.sql.queues)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?
        .iter()
        .map(record)
        .collect()
}

fn record(row: &sqlx::postgres::PgRow) -> Result<QueueRecord, StoreError> {
    Ok(QueueRecord::new(
        row.try_get::<String, _>(0).map_err(db)?,
        row.try_get::<bool, _>(1).map_err(db)?,
        row.try_get::<DateTime<Utc>, _>(2).map_err(db)?,
    ))
}
