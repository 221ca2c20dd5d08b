//! Reading job rows back from SQLite.

use chrono::{DateTime, Utc};
use errand_core::{ClaimRequest, JobRow, JobState, StoreError};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

/// The column list every query that returns jobs selects, in [`decode`]'s order.
pub(crate) const COLUMNS: &str = "id, kind, queue, args, state, priority, attempt, max_attempts, \
     run_at, created_at, attempted_at, finalized_at, lease_expires_at, attempted_by, errors, \
     tags, unique_key, backoff, timeout_ms";

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(id: i64, us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| StoreError::Corrupt {
        id,
        reason: format!("timestamp {us} out of range"),
    })
}

fn opt_time(id: i64, us: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    us.map(|us| time(id, us)).transpose()
}

fn json<T: serde::de::DeserializeOwned>(id: i64, col: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt_json(id, col, e))
}

/// Decodes a row selected with [`COLUMNS`].
pub(crate) fn decode(row: &SqliteRow) -> Result<JobRow, StoreError> {
    let db = crate::store::db;
    let id: i64 = row.try_get(0).map_err(db)?;
    let state: String = row.try_get(4).map_err(db)?;
    let errors: String = row.try_get(14).map_err(db)?;
    let tags: String = row.try_get(15).map_err(db)?;
    let backoff: Option<String> = row.try_get(17).map_err(db)?;
    Ok(JobRow {
        id,
        kind: row.try_get(1).map_err(db)?,
        queue: row.try_get(2).map_err(db)?,
        args: row.try_get(3).map_err(db)?,
        state: StoreError::parse_state(id, &state)?,
        priority: row.try_get(5).map_err(db)?,
        attempt: row.try_get(6).map_err(db)?,
        max_attempts: row.try_get(7).map_err(db)?,
        run_at: time(id, row.try_get(8).map_err(db)?)?,
        created_at: time(id, row.try_get(9).map_err(db)?)?,
        attempted_at: opt_time(id, row.try_get(10).map_err(db)?)?,
        finalized_at: opt_time(id, row.try_get(11).map_err(db)?)?,
        lease_expires_at: opt_time(id, row.try_get(12).map_err(db)?)?,
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

/// What a claim returns: only the columns the claim did not just set. The rest (state,
/// queue, who and when, the lease) are known from the request, and each column SQLite hands
/// back is one more value copied per row.
pub(crate) const CLAIMED_COLUMNS: &str = "id, kind, args, priority, attempt, max_attempts, \
     run_at, created_at, errors, tags, unique_key, backoff, timeout_ms";

/// Decodes a row selected with [`CLAIMED_COLUMNS`] by the claim `req`, whose lease runs
/// until `lease_until`.
pub(crate) fn decode_claimed(
    row: &SqliteRow,
    req: &ClaimRequest,
    lease_until: DateTime<Utc>,
) -> Result<JobRow, StoreError> {
    let db = crate::store::db;
    let id: i64 = row.try_get(0).map_err(db)?;
    let errors: &str = row.try_get(8).map_err(db)?;
    let tags: &str = row.try_get(9).map_err(db)?;
    let backoff: Option<&str> = row.try_get(11).map_err(db)?;
    Ok(JobRow {
        id,
        kind: row.try_get(1).map_err(db)?,
        queue: req.queue.clone(),
        args: row.try_get(2).map_err(db)?,
        state: JobState::Running,
        priority: row.try_get(3).map_err(db)?,
        attempt: row.try_get(4).map_err(db)?,
        max_attempts: row.try_get(5).map_err(db)?,
        run_at: time(id, row.try_get(6).map_err(db)?)?,
        created_at: time(id, row.try_get(7).map_err(db)?)?,
        attempted_at: Some(time(id, micros(req.now))?),
        finalized_at: None,
        lease_expires_at: Some(time(id, micros(lease_until))?),
        attempted_by: Some(req.worker_id.clone()),
        errors: json(id, "errors", errors)?,
        tags: json(id, "tags", tags)?,
        unique_key: row.try_get(10).map_err(db)?,
        backoff: backoff.map(|b| json(id, "backoff", b)).transpose()?,
        timeout_ms: row.try_get(12).map_err(db)?,
    })
}
