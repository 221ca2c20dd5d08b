//! Reading job rows back from Postgres.

use chrono::{DateTime, Utc};
use errand_core::{JobRow, StoreError};
use sqlx::postgres::PgRow;
use sqlx::Row;

/// The column list every query that returns jobs selects, in [`decode`]'s order.
pub(crate) const COLUMNS: &str = "id, kind, queue, args::text, state, priority, attempt, \
     max_attempts, run_at, created_at, attempted_at, finalized_at, lease_expires_at, \
     attempted_by, errors::text, tags::text, unique_key, backoff::text, timeout_ms";

fn json<T: serde::de::DeserializeOwned>(id: i64, col: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt_json(id, col, e))
}

/// Decodes a row selected with [`COLUMNS`].
pub(crate) fn decode(row: &PgRow) -> Result<JobRow, StoreError> {
    let db = crate::store::db;
    let id: i64 = row.try_get(0).map_err(db)?;
    let state: String = row.try_get(4).map_err(db)?;
    let errors: String = row.try_get(14).map_err(db)?;
    let tags: String = row.try_get(15).map_err(db)?;
    let backoff: Option<String> = row.try_get(17).map_err(db)?;
    let time = |i: usize| -> Result<DateTime<Utc>, StoreError> { row.try_get(i).map_err(db) };
    let opt_time =
        |i: usize| -> Result<Option<DateTime<Utc>>, StoreError> { row.try_get(i).map_err(db) };
    Ok(JobRow {
        id,
        kind: row.try_get(1).map_err(db)?,
        queue: row.try_get(2).map_err(db)?,
        args: row.try_get(3).map_err(db)?,
        state: StoreError::parse_state(id, &state)?,
        priority: row.try_get(5).map_err(db)?,
        attempt: row.try_get(6).map_err(db)?,
        max_attempts: row.try_get(7).map_err(db)?,
        run_at: time(8)?,
        created_at: time(9)?,
        attempted_at: opt_time(10)?,
        finalized_at: opt_time(11)?,
        lease_expires_at: opt_time(12)?,
        attempted_by: row.try_get(13).map_err(db)?,
        errors: json(id, "errors", &errors)?,
        tags: json(id, "tags", &tags)?,
        unique_key: row.try_get(16).map_err(db)?,
        backoff: backoff
            .as_deref()
            .map(|b| json(id, "backoff", b))
            .transpose()?,
        timeout_ms: row.try_get(18).map_err(db)?,
    })
}
