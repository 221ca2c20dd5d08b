//! Queue records: pause, resume and limits, read by every worker's queue watcher (woken at
//! once in this process, by polling in others) and by the claim itself.

use chrono::{DateTime, Utc};
use errand_core::{check_queue_name, QueueRecord, StoreError};

use crate::error::db;
use crate::row::{micros, time};
use crate::store::SqliteStore;

type Row = (String, bool, Option<i64>, i64);

pub(crate) async fn set_paused(
    s: &SqliteStore,
    queue: &str,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<QueueRecord, StoreError> {
    check_queue_name(queue)?;
    let w = s.writer().await?;
    let row: Row = sqlx::query_as(
        "INSERT INTO errand_queues (name, paused, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at \
         RETURNING name, paused, max_running, updated_at",
    )
    .bind(queue)
    .bind(paused)
    .bind(micros(now))
    .fetch_one(w.pool())
    .await
    .map_err(db)?;
    drop(w);
    s.signals.notify_controls();
    if !paused {
        s.signals.notify(queue);
    }
    record(row)
}

pub(crate) async fn set_limit(
    s: &SqliteStore,
    queue: &str,
    max_running: Option<u32>,
    now: DateTime<Utc>,
) -> Result<QueueRecord, StoreError> {
    errand_core::check_queue_limit(queue, max_running)?;
    let w = s.writer().await?;
    let row: Row = sqlx::query_as(
        "INSERT INTO errand_queues (name, max_running, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET max_running = excluded.max_running, \
         updated_at = excluded.updated_at RETURNING name, paused, max_running, updated_at",
    )
    .bind(queue)
    .bind(max_running.map(i64::from))
    .bind(micros(now))
    .fetch_one(w.pool())
    .await
    .map_err(db)?;
    drop(w);
    s.signals.notify_controls();
    s.signals.notify(queue);
    record(row)
}

pub(crate) async fn oldest_available(
    s: &SqliteStore,
) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT queue, min(run_at) FROM errand_jobs WHERE state = 'available' \
         GROUP BY queue ORDER BY queue",
    )
    .fetch_all(s.reader())
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|(q, at)| {
            let at =
                time(at).map_err(|e| StoreError::Database(format!("queue {q}: {e}").into()))?;
            Ok((q, at))
        })
        .collect()
}

pub(crate) async fn queues(s: &SqliteStore) -> Result<Vec<QueueRecord>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, paused, max_running, updated_at FROM errand_queues ORDER BY name",
    )
    .fetch_all(s.reader())
    .await
    .map_err(db)?;
    rows.into_iter().map(record).collect()
}

fn record((name, paused, max, at): Row) -> Result<QueueRecord, StoreError> {
    let at = time(at).map_err(|e| StoreError::Database(format!("queue {name}: {e}").into()))?;
    let max = max.and_then(|n| u32::try_from(n).ok());
    Ok(QueueRecord::new(name, paused, at).with_max_running(max))
}
