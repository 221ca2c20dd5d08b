//! The audit log: one row per operator action in `errand_audit`, read newest first.

use chrono::{DateTime, Utc};
use errand_core::{AuditEntry, NewAudit, StoreError};

use crate::error::db;
use crate::row::{micros, time};
use crate::store::SqliteStore;

pub(crate) async fn record(
    s: &SqliteStore,
    e: &NewAudit,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let w = s.writer().await?;
    // Stepped to done (fetch_all): a RETURNING statement reset early skips the checkpoint.
    let ids: Vec<(i64,)> = sqlx::query_as(
        "INSERT INTO errand_audit (at, actor, action, target, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
    )
    .bind(micros(now))
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.target)
    .bind(&e.detail)
    .fetch_all(w.pool())
    .await
    .map_err(db)?;
    ids.first()
        .map(|(id,)| *id)
        .ok_or_else(|| StoreError::Database("audit insert returned no id".into()))
}

pub(crate) async fn log(
    s: &SqliteStore,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<AuditEntry>, StoreError> {
    type Row = (i64, i64, String, String, String, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, at, actor, action, target, detail FROM errand_audit \
         WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(i64::from(if limit == 0 { 100 } else { limit }))
    .fetch_all(s.reader())
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|(id, at, actor, action, target, detail)| {
            let at = time(at)
                .map_err(|e| StoreError::Database(format!("audit entry {id}: {e}").into()))?;
            Ok(AuditEntry::new(
                id,
                at,
                NewAudit::new(actor, action, target, detail),
            ))
        })
        .collect()
}
