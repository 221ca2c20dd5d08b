//! Reading job rows back from Postgres.

use chrono::{DateTime, Utc};
use errand_core::{JobRow, JobState, RowReader, StoreError, UniqueStates};
use sqlx::postgres::PgRow;
use sqlx::Row;

/// The column list every query that returns jobs selects, in [`decode`]'s order.
pub(crate) const COLUMNS: &str = "id, kind, queue, args::text, state, priority, attempt, \
     max_attempts, run_at, created_at, attempted_at, finalized_at, lease_expires_at, \
     attempted_by, errors::text, tags::text, unique_key, backoff::text, timeout_ms, result::text, \
     progress::text, unique_states, unique_for_ms, partition_key";

/// Decodes a row selected with [`COLUMNS`]. Only an unreadable id fails the call: any
/// other column that cannot be read takes a fallback value and is named in
/// [`JobRow::corrupt`], so one bad row never fails the others read with it.
pub(crate) fn decode(row: &PgRow) -> Result<JobRow, StoreError> {
    let id: i64 = row.try_get(0).map_err(crate::error::db)?;
    let mut r = RowReader::default();
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let text = |r: &mut RowReader, i: usize, col: &str| -> String {
        r.value(col, row.try_get::<String, _>(i), String::new())
    };
    let state_text = text(&mut r, 4, "state");
    let state = r.value("state", state_text.parse::<JobState>(), JobState::Discarded);
    let errors = text(&mut r, 14, "errors");
    let tags = text(&mut r, 15, "tags");
    let backoff: Option<String> = r.value("backoff", row.try_get(17), None);
    let time = |r: &mut RowReader, i: usize, col: &str| r.value(col, row.try_get(i), epoch);
    let opt_time = |r: &mut RowReader, i: usize, col: &str| {
        r.value(col, row.try_get(i), None::<DateTime<Utc>>)
    };
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
    job.run_at = time(&mut r, 8, "run_at");
    job.created_at = time(&mut r, 9, "created_at");
    job.attempted_at = opt_time(&mut r, 10, "attempted_at");
    job.finalized_at = opt_time(&mut r, 11, "finalized_at");
    job.lease_expires_at = opt_time(&mut r, 12, "lease_expires_at");
    job.attempted_by = r.value("attempted_by", row.try_get(13), None);
    job.errors = r.json("errors", &errors);
    job.tags = r.json("tags", &tags);
    job.unique_key = r.value("unique_key", row.try_get(16), None);
    job.backoff = r.json_opt("backoff", backoff.as_deref());
    job.timeout_ms = r.value("timeout_ms", row.try_get(18), None);
    job.result = r.value("result", row.try_get(19), None);
    let progress: Option<String> = r.value("progress", row.try_get(20), None);
    job.progress = r.json_opt("progress", progress.as_deref());
    let bits: i16 = r.value("unique_states", row.try_get(21), 15);
    job.unique_states = UniqueStates::from_bits(i64::from(bits));
    job.unique_for_ms = r.value("unique_for_ms", row.try_get(22), None);
    job.partition_key = r.value("partition_key", row.try_get(23), None);
    job.corrupt = r.finish();
    Ok(job)
}
