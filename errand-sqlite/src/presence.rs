//! The worker registry: one row per worker in `errand_workers`, replaced by its heartbeat.

use chrono::{DateTime, Utc};
use errand_core::{StoreError, WorkerRecord};

use crate::error::db;
use crate::row::{micros, time};
use crate::store::SqliteStore;

pub(crate) async fn register(s: &SqliteStore, w: &WorkerRecord) -> Result<(), StoreError> {
    let wr = s.writer().await?;
    sqlx::query(
        "INSERT OR REPLACE INTO errand_workers \
         (id, host, pid, version, queues, started_at, heartbeat_at, running, interval_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .bind(&w.id)
    .bind(&w.host)
    .bind(i64::from(w.pid))
    .bind(&w.version)
    .bind(w.queues_json())
    .bind(micros(w.started_at))
    .bind(micros(w.heartbeat_at))
    .bind(i64::from(w.running))
    .bind(i64::try_from(w.interval_ms).unwrap_or(i64::MAX))
    .execute(wr.pool())
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) async fn deregister(s: &SqliteStore, id: &str) -> Result<(), StoreError> {
    let wr = s.writer().await?;
    sqlx::query("DELETE FROM errand_workers WHERE id = ?1")
        .bind(id)
        .execute(wr.pool())
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn list(s: &SqliteStore) -> Result<Vec<WorkerRecord>, StoreError> {
    type Row = (String, String, i64, String, String, i64, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, host, pid, version, queues, started_at, heartbeat_at, running, interval_ms \
         FROM errand_workers ORDER BY started_at, id",
    )
    .fetch_all(s.reader())
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(
            |(id, host, pid, version, queues, started, beat, running, every)| {
                let bad = |e: String| StoreError::Database(format!("worker {id}: {e}").into());
                Ok(WorkerRecord::new(
                    id.clone(),
                    host,
                    u32::try_from(pid).unwrap_or(0),
                    version,
                    WorkerRecord::parse_queues(&queues),
                    time(started).map_err(bad)?,
                    time(beat).map_err(bad)?,
                    u32::try_from(running).unwrap_or(u32::MAX),
                    u64::try_from(every).unwrap_or(0),
                ))
            },
        )
        .collect()
}

pub(crate) async fn forget(
    s: &SqliteStore,
    silent_since: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let wr = s.writer().await?;
    let r = sqlx::query("DELETE FROM errand_workers WHERE heartbeat_at < ?1")
        .bind(micros(silent_since))
        .execute(wr.pool())
        .await
        .map_err(db)?;
    Ok(r.rows_affected())
}
