//! Reading job rows back from SQLite.

use chrono::{DateTime, Utc};
use errand_core::{ClaimRequest, JobRow, JobState, RowReader, StoreError, UniqueStates};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

/// The column list every query that returns jobs selects, in [`decode`]'s order.
pub(crate) const COLUMNS: &str = "id, kind, queue, args, state, priority, attempt, max_attempts, \
     run_at, created_at, attempted_at, finalized_at, lease_expires_at, attempted_by, errors, \
     tags, unique_key, backoff, timeout_ms, result, progress, unique_states, unique_for_ms, \
     partition_key";

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time(us: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| format!("timestamp {us} out of range"))
}

const EPOCH: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

/// Decodes a row selected with [`COLUMNS`]. Only an unreadable id fails the call: any
/// other column that cannot be read takes a fallback value and is named in
/// [`JobRow::corrupt`], so one bad row never fails the others read with it.
pub(crate) fn decode(row: &SqliteRow) -> Result<JobRow, StoreError> {
    let id: i64 = row.try_get(0).map_err(crate::error::db)?;
    let mut r = RowReader::default();
    let text = |r: &mut RowReader, i: usize, col: &str| -> String {
        r.value(col, row.try_get::<String, _>(i), String::new())
    };
    let at = |r: &mut RowReader, i: usize, col: &str| -> DateTime<Utc> {
        let us = r.value(col, row.try_get::<i64, _>(i).map_err(|e| e.to_string()), 0);
        r.value(col, time(us), EPOCH)
    };
    let opt_at = |r: &mut RowReader, i: usize, col: &str| -> Option<DateTime<Utc>> {
        let us = r.value(col, row.try_get::<Option<i64>, _>(i), None)?;
        Some(r.value(col, time(us), EPOCH))
    };
    let state_text = text(&mut r, 4, "state");
    let state = r.value("state", state_text.parse::<JobState>(), JobState::Discarded);
    let errors = text(&mut r, 14, "errors");
    let tags = text(&mut r, 15, "tags");
    let backoff: Option<String> = r.value("backoff", row.try_get(17), None);
    let mut job = JobRow::new(
        id,
        text(&mut r, 1, "kind"),
        text(&mut r, 2, "queue"),
        text(&mut r, 3, "args"),
    );
    job.state = state;
    job.priority = r.value("priority", row.try_get(5), 0);
    job.attempt = r.value("attempt", row.try_get(6), 0);
    job.max_attempts = r.value("max_attempts", row.try_get(7), 1);
    job.run_at = at(&mut r, 8, "run_at");
    job.created_at = at(&mut r, 9, "created_at");
    job.attempted_at = opt_at(&mut r, 10, "attempted_at");
    job.finalized_at = opt_at(&mut r, 11, "finalized_at");
    job.lease_expires_at = opt_at(&mut r, 12, "lease_expires_at");
    job.attempted_by = r.value("attempted_by", row.try_get(13), None);
    job.errors = r.json("errors", &errors);
    job.tags = r.json("tags", &tags);
    job.unique_key = r.value("unique_key", row.try_get(16), None);
    job.backoff = r.json_opt("backoff", backoff.as_deref());
    job.timeout_ms = r.value("timeout_ms", row.try_get(18), None);
    job.result = r.value("result", row.try_get(19), None);
    let progress: Option<String> = r.value("progress", row.try_get(20), None);
    job.progress = r.json_opt("progress", progress.as_deref());
    job.unique_states = UniqueStates::from_bits(r.value("unique_states", row.try_get(21), 15));
    job.unique_for_ms = r.value("unique_for_ms", row.try_get(22), None);
    job.partition_key = r.value("partition_key", row.try_get(23), None);
    job.corrupt = r.finish();
    Ok(job)
}

/// What a claim returns for each job: one JSON array of the columns the claim did not just
/// set (state, queue, who and when, and the lease are known from the request).
///
/// One value per row, not thirteen: sqlx copies every value SQLite hands back into its own
/// allocation on the connection's thread and frees it on the reader's, and for a claim of a
/// thousand short jobs those copies cost more than reading the JSON back (errand bench).
/// `args`, `errors`, `tags` and `backoff` travel as JSON strings holding their exact text.
/// (On the store's own connection, which reads in place, the JSON still costs less on the
/// connection's thread than fourteen values read one by one: ~7 % of the process phase.)
pub(crate) const CLAIMED: &str = "json_array(id, kind, args, priority, attempt, max_attempts, \
     run_at, created_at, errors, tags, unique_key, backoff, timeout_ms, partition_key)";

/// [`CLAIMED`] for a claim that met a row `json_array` refuses: SQLite keeps any value in any
/// column, and `json_array` fails on a BLOB, which failed the claim of every job with it.
/// Here each column is guarded, a BLOB becoming `{"blob_bytes": n}`, which no field accepts,
/// so that one job is named unreadable and discarded. Slower (~7 % of the process phase), so
/// only used once the plain claim failed so, and for metered claims.
pub(crate) const CLAIMED_GUARDED: &str = concat!(
    "json_array(id",
    ", ",
    readable!("kind"),
    ", ",
    readable!("args"),
    ", ",
    readable!("priority"),
    ", ",
    readable!("attempt"),
    ", ",
    readable!("max_attempts"),
    ", ",
    readable!("run_at"),
    ", ",
    readable!("created_at"),
    ", ",
    readable!("errors"),
    ", ",
    readable!("tags"),
    ", ",
    readable!("unique_key"),
    ", ",
    readable!("backoff"),
    ", ",
    readable!("timeout_ms"),
    ", ",
    readable!("partition_key"),
    ")"
);

/// A column of [`CLAIMED_GUARDED`], with a BLOB in it as an object saying so.
macro_rules! readable {
    ($col:literal) => {
        concat!(
            "iif(typeof(",
            $col,
            ") = 'blob', json_object('blob_bytes', length(",
            $col,
            ")), ",
            $col,
            ")"
        )
    };
}
use readable;

/// One [`CLAIMED`] value as the store's own connection reads it: text that is not UTF-8 (which
/// SQLite stores as given) is read with replacement characters, and the job it came from is
/// marked unreadable by [`decode_claimed_text`].
pub(crate) fn claimed_text(v: rusqlite::types::ValueRef<'_>) -> (String, bool) {
    match v {
        rusqlite::types::ValueRef::Text(t) => claimed_bytes(t),
        // `json_array` returns text; anything else is read as nothing, and fails the id.
        _ => (String::new(), true),
    }
}

/// [`claimed_text`] of a value read as bytes (a metered claim reads it so through sqlx,
/// which fails a whole statement on text that is not UTF-8).
pub(crate) fn claimed_bytes(t: &[u8]) -> (String, bool) {
    match std::str::from_utf8(t) {
        Ok(t) => (t.to_owned(), true),
        Err(_) => (String::from_utf8_lossy(t).into_owned(), false),
    }
}

/// [`decode_claimed`] of a value read by [`claimed_text`].
pub(crate) fn decode_claimed_text(
    (text, utf8): &(String, bool),
    req: &ClaimRequest,
    lease_until: DateTime<Utc>,
) -> Result<JobRow, StoreError> {
    let mut job = decode_claimed(text, req, lease_until)?;
    if !utf8 {
        let problem = "a column holds text that is not UTF-8";
        job.corrupt = Some(match job.corrupt {
            Some(other) => format!("{other}; {problem}"),
            None => problem.to_owned(),
        });
    }
    Ok(job)
}

/// Decodes one [`CLAIMED`] value of the claim `req`, whose lease runs until `lease_until`.
/// Like [`decode`], a column that cannot be read is named in [`JobRow::corrupt`]; only a
/// value without a readable id fails the call.
pub(crate) fn decode_claimed(
    text: &str,
    req: &ClaimRequest,
    lease_until: DateTime<Utc>,
) -> Result<JobRow, StoreError> {
    let v: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| StoreError::corrupt_json(0, "claimed row", e))?;
    let get = |i: usize| v.get(i).unwrap_or(&serde_json::Value::Null);
    let id = get(0).as_i64().ok_or_else(|| StoreError::Corrupt {
        id: 0,
        reason: format!("claimed row without a readable id: {text}"),
    })?;
    let mut r = RowReader::default();
    fn field<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Result<T, String> {
        T::deserialize(v).map_err(|e| format!("{e} (stored: {v})"))
    }
    let at = |r: &mut RowReader, i: usize, col: &str| -> DateTime<Utc> {
        let us = r.value(col, field::<i64>(get(i)), 0);
        r.value(col, time(us), EPOCH)
    };
    let errors: String = r.value("errors", field(get(8)), "[]".into());
    let tags: String = r.value("tags", field(get(9)), "[]".into());
    let backoff: Option<String> = r.value("backoff", field(get(11)), None);
    let mut job = JobRow::new(
        id,
        r.value("kind", field(get(1)), String::new()),
        req.queue.clone(),
        r.value("args", field(get(2)), String::new()),
    );
    job.state = JobState::Running;
    job.priority = r.value("priority", field(get(3)), 0);
    job.attempt = r.value("attempt", field(get(4)), 0);
    job.max_attempts = r.value("max_attempts", field(get(5)), 1);
    job.run_at = at(&mut r, 6, "run_at");
    job.created_at = at(&mut r, 7, "created_at");
    // As stored: microseconds.
    job.attempted_at = DateTime::from_timestamp_micros(micros(req.now));
    job.finalized_at = None;
    job.lease_expires_at = DateTime::from_timestamp_micros(micros(lease_until));
    job.attempted_by = Some(req.worker_id.clone());
    job.errors = r.json("errors", &errors);
    job.tags = r.json("tags", &tags);
    job.unique_key = r.value("unique_key", field(get(10)), None);
    job.backoff = r.json_opt("backoff", backoff.as_deref());
    job.timeout_ms = r.value("timeout_ms", field(get(12)), None);
    job.partition_key = r.value("partition_key", field(get(13)), None);
    job.corrupt = r.finish();
    Ok(job)
}
