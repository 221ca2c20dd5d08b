//! The audit log: one row per operator action in `audit_log`, read newest first.

use chrono::{DateTime, Utc};
use errand_core::{AuditEntry, NewAudit, StoreError};
use sqlx::Row;

use crate::error::db;
use crate::store::PgStore;

pub(crate) async fn record(
    s: &PgStore,
    e: &NewAudit,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let row = sqlx::query(&s.inner.sql.audit_insert)
        .bind(now)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.detail)
        .fetch_one(&s.inner.pool)
        .await
        .map_err(db)?;
    row.try_get::<i64, _>(0).map_err(db)
}

pub(crate) async fn log(
    s: &PgStore,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query(&s.inner.sql.audit_log)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(if limit == 0 { 100 } else { limit }))
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry::new(
                r.try_get(0).map_err(db)?,
                r.try_get(1).map_err(db)?,
                NewAudit::new(
                    r.try_get::<String, _>(2).map_err(db)?,
                    r.try_get::<String, _>(3).map_err(db)?,
                    r.try_get::<String, _>(4).map_err(db)?,
                    r.try_get::<String, _>(5).map_err(db)?,
                ),
            ))
        })
        .collect()
}
