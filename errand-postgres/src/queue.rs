//! Queue records: pause, resume and limits, read by every worker's queue watcher (woken by
//! `NOTIFY`) and by the claim itself (`claimable`, migration 3).

use chrono::{DateTime, Utc};
use errand_core::{check_queue_name, QueueRecord, StoreError};
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
    check_queue_name(queue)?;
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

pub(crate) async fn set_limit(
    s: &PgStore,
    queue: &str,
    max_running: Option<u32>,
    now: DateTime<Utc>,
) -> Result<QueueRecord, StoreError> {
    errand_core::check_queue_limit(queue, max_running)?;
    let limit = max_running.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    let row = sqlx::query(&s.inner.sql.set_limit)
        .bind(queue)
        .bind(limit)
        .bind(now)
        .bind(&s.inner.channel)
        .bind(CONTROLS_PAYLOAD)
        .fetch_one(&s.inner.pool)
        .await
        .map_err(db)?;
    s.inner.signals.notify_controls();
    s.inner.signals.notify(queue);
    record(&row)
}

pub(crate) async fn oldest_available(
    s: &PgStore,
) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
    sqlx::query_as(&s.inner.sql.oldest_available)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)
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
    let max: Option<i32> = row.try_get(2).map_err(db)?;
    Ok(QueueRecord::new(
        row.try_get::<String, _>(0).map_err(db)?,
        row.try_get::<bool, _>(1).map_err(db)?,
        row.try_get::<DateTime<Utc>, _>(3).map_err(db)?,
    )
    .with_max_running(max.and_then(|n| u32::try_from(n).ok())))
}
