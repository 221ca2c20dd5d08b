//! Leadership leases: one row per lease in `errand_leaders`, taken or renewed by one upsert.

use std::time::Duration;

use chrono::{DateTime, Utc};
use errand_core::{later, Leader, StoreError};

use crate::error::db;
use crate::row::{micros, time};
use crate::store::SqliteStore;

pub(crate) async fn lead(
    s: &SqliteStore,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<bool, StoreError> {
    let w = s.writer().await?;
    // Taken when free or ended; renewed only by its holder (who keeps its elected_at).
    let won: Vec<(String,)> = sqlx::query_as(
        "INSERT INTO errand_leaders (name, holder, elected_at, expires_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
           elected_at = CASE WHEN errand_leaders.holder = excluded.holder \
                             THEN errand_leaders.elected_at ELSE excluded.elected_at END \
         WHERE errand_leaders.holder = excluded.holder OR errand_leaders.expires_at <= ?3 \
         RETURNING holder",
    )
    .bind(name)
    .bind(holder)
    .bind(micros(now))
    .bind(micros(later(now, lease)))
    .fetch_all(w.pool())
    .await
    .map_err(db)?;
    Ok(!won.is_empty())
}

pub(crate) async fn resign(s: &SqliteStore, name: &str, holder: &str) -> Result<(), StoreError> {
    let w = s.writer().await?;
    sqlx::query("DELETE FROM errand_leaders WHERE name = ?1 AND holder = ?2")
        .bind(name)
        .bind(holder)
        .execute(w.pool())
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn leader(s: &SqliteStore, name: &str) -> Result<Option<Leader>, StoreError> {
    let row: Option<(String, i64, i64)> =
        sqlx::query_as("SELECT holder, elected_at, expires_at FROM errand_leaders WHERE name = ?1")
            .bind(name)
            .fetch_optional(s.reader())
            .await
            .map_err(db)?;
    row.map(|(holder, elected, expires)| {
        let bad = |e: String| StoreError::Database(format!("leader {name}: {e}").into());
        Ok(Leader::new(
            name,
            holder,
            time(elected).map_err(bad)?,
            time(expires).map_err(bad)?,
        ))
    })
    .transpose()
}
