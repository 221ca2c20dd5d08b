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

/// What a claim returns for each job: one JSON array of the columns the claim did not just
/// set (state, queue, who and when, and the lease are known from the request).
///
/// One value per row, not thirteen: sqlx copies every value SQLite hands back into its own
/// allocation on the connection's thread and frees it on the reader's, and for a claim of a
/// thousand short jobs those copies cost more than reading the JSON back (errand bench).
/// `args`, `errors`, `tags` and `backoff` travel as JSON strings holding their exact text.
pub(crate) const CLAIMED: &str = "json_array(id, kind, args, priority, attempt, max_attempts, \
     run_at, created_at, errors, tags, unique_key, backoff, timeout_ms)";

/// The columns of [`CLAIMED`], in order.
type Claimed = (
    i64,
    String,
    String,
    i16,
    i32,
    i32,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// Decodes one [`CLAIMED`] value of the claim `req`, whose lease runs until `lease_until`.
pub(crate) fn decode_claimed(
    text: &str,
    req: &ClaimRequest,
    lease_until: DateTime<Utc>,
) -> Result<JobRow, StoreError> {
    let (
        id,
        kind,
        args,
        priority,
        attempt,
        max_attempts,
        run_at,
        created_at,
        errors,
        tags,
        unique_key,
        backoff,
        timeout_ms,
    ): Claimed =
        serde_json::from_str(text).map_err(|e| StoreError::corrupt_json(0, "claimed row", e))?;
    Ok(JobRow {
        id,
        kind,
        queue: req.queue.clone(),
        args,
        state: JobState::Running,
        priority,
        attempt,
        max_attempts,
        run_at: time(id, run_at)?,
        created_at: time(id, created_at)?,
        attempted_at: Some(time(id, micros(req.now))?),
        finalized_at: None,
        lease_expires_at: Some(time(id, micros(lease_until))?),
        attempted_by: Some(req.worker_id.clone()),
        errors: json(id, "errors", &errors)?,
        tags: json(id, "tags", &tags)?,
        unique_key,
        backoff: backoff
            .as_deref()
            .map(|b| json(id, "backoff", b))
            .transpose()?,
        timeout_ms,
    })
}
