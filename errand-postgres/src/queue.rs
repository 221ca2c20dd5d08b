//! Queue records: pause, resume and limits, read by every worker's queue watcher (woken by
//! `NOTIFY`) and by the claim itself (`claim_plan`, migration 6).

use chrono::{DateTime, Utc};
use errand_core::{check_queue_name, QueueLimits, QueueRecord, RateLimit, StoreError};
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

pub(crate) async fn set_limits(
    s: &PgStore,
    queue: &str,
    limits: &QueueLimits,
    now: DateTime<Utc>,
) -> Result<QueueRecord, StoreError> {
    errand_core::check_queue_limits(queue, limits)?;
    let int = |n: Option<u32>| n.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    let row = sqlx::query(&s.inner.sql.set_limits)
        .bind(queue)
        .bind(int(limits.max_running))
        .bind(now)
        .bind(&s.inner.channel)
        .bind(CONTROLS_PAYLOAD)
        .bind(int(limits.max_per_key))
        .bind(int(limits.rate.map(|r| r.starts)))
        .bind(limits.rate.map(|r| r.period_ms()))
        .bind(int(limits.rate_per_key.map(|r| r.starts)))
        .bind(limits.rate_per_key.map(|r| r.period_ms()))
        .fetch_one(&s.inner.pool)
        .await
        .map_err(db)?;
    s.inner.signals.notify_controls();
    s.inner.signals.notify(queue);
    let record = record(&row)?;
    s.inner.metered.learn(queue, record.is_metered());
    Ok(record)
}

pub(crate) async fn with_available(
    s: &PgStore,
    queues: &[String],
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(&s.inner.sql.with_available)
        .bind(queues)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)
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
    let records = sqlx::query(&s.inner.sql.queues)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?
        .iter()
        .map(record)
        .collect::<Result<Vec<_>, _>>()?;
    s.inner.metered.learn_all(&records);
    Ok(records)
}

fn record(row: &sqlx::postgres::PgRow) -> Result<QueueRecord, StoreError> {
    let count = |i: usize| -> Result<Option<u32>, StoreError> {
        let n: Option<i32> = row.try_get(i).map_err(db)?;
        Ok(n.and_then(|n| u32::try_from(n).ok()))
    };
    let rate = |i: usize| -> Result<Option<RateLimit>, StoreError> {
        let starts: Option<i32> = row.try_get(i).map_err(db)?;
        let period: Option<i64> = row.try_get(i + 1).map_err(db)?;
        Ok(RateLimit::from_stored(starts.map(i64::from), period))
    };
    let limits = QueueLimits {
        max_running: count(2)?,
        max_per_key: count(4)?,
        rate: rate(5)?,
        rate_per_key: rate(7)?,
    };
    Ok(QueueRecord::new(
        row.try_get::<String, _>(0).map_err(db)?,
        row.try_get::<bool, _>(1).map_err(db)?,
        row.try_get::<DateTime<Utc>, _>(3).map_err(db)?,
    )
    .with_limits(limits))
}
