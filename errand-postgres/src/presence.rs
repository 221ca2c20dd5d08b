//! The worker registry: one row per worker in `workers`, replaced by its heartbeat.

use chrono::{DateTime, Utc};
use errand_core::{StoreError, WorkerRecord};
use sqlx::Row;

use crate::error::db;
use crate::store::PgStore;

pub(crate) async fn register(s: &PgStore, w: &WorkerRecord) -> Result<(), StoreError> {
    sqlx::query(&s.inner.sql.register_worker)
        .bind(&w.id)
        .bind(&w.host)
        .bind(i64::from(w.pid))
        .bind(&w.version)
        .bind(w.queues_json())
        .bind(w.started_at)
        .bind(w.heartbeat_at)
        .bind(i64::from(w.running))
        .bind(i64::try_from(w.interval_ms).unwrap_or(i64::MAX))
        .execute(&s.inner.pool)
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn deregister(s: &PgStore, id: &str) -> Result<(), StoreError> {
    sqlx::query(&s.inner.sql.deregister_worker)
        .bind(id)
        .execute(&s.inner.pool)
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn list(s: &PgStore) -> Result<Vec<WorkerRecord>, StoreError> {
    let rows = sqlx::query(&s.inner.sql.workers)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok(WorkerRecord::new(
                r.try_get::<String, _>(0).map_err(db)?,
                r.try_get::<String, _>(1).map_err(db)?,
                u32::try_from(r.try_get::<i64, _>(2).map_err(db)?).unwrap_or(0),
                r.try_get::<String, _>(3).map_err(db)?,
                WorkerRecord::parse_queues(&r.try_get::<String, _>(4).map_err(db)?),
                r.try_get(5).map_err(db)?,
                r.try_get(6).map_err(db)?,
                u32::try_from(r.try_get::<i64, _>(7).map_err(db)?).unwrap_or(u32::MAX),
                u64::try_from(r.try_get::<i64, _>(8).map_err(db)?).unwrap_or(0),
            ))
        })
        .collect()
}

pub(crate) async fn forget(s: &PgStore, silent_since: DateTime<Utc>) -> Result<u64, StoreError> {
    let r = sqlx::query(&s.inner.sql.forget_workers)
        .bind(silent_since)
        .execute(&s.inner.pool)
        .await
        .map_err(db)?;
    Ok(r.rows_affected())
}
