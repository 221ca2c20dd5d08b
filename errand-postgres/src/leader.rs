//! Leadership leases: one row per lease in `leaders`, taken or renewed by one upsert. The
//! row lock `ON CONFLICT` takes makes racers take turns: the second sees the first's lease.

use std::time::Duration;

use chrono::{DateTime, Utc};
use errand_core::{later, Leader, StoreError};
use sqlx::Row;

use crate::error::db;
use crate::store::PgStore;

pub(crate) async fn lead(
    s: &PgStore,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<bool, StoreError> {
    let won = sqlx::query(&s.inner.sql.lead)
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(later(now, lease))
        .fetch_optional(&s.inner.pool)
        .await
        .map_err(db)?;
    Ok(won.is_some())
}

pub(crate) async fn resign(s: &PgStore, name: &str, holder: &str) -> Result<(), StoreError> {
    sqlx::query(&s.inner.sql.resign)
        .bind(name)
        .bind(holder)
        .execute(&s.inner.pool)
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn leader(s: &PgStore, name: &str) -> Result<Option<Leader>, StoreError> {
    let row = sqlx::query(&s.inner.sql.leader)
        .bind(name)
        .fetch_optional(&s.inner.pool)
        .await
        .map_err(db)?;
    row.map(|r| {
        Ok(Leader::new(
            name,
            r.try_get::<String, _>(0).map_err(db)?,
            r.try_get::<DateTime<Utc>, _>(1).map_err(db)?,
            r.try_get::<DateTime<Utc>, _>(2).map_err(db)?,
        ))
    })
    .transpose()
}
