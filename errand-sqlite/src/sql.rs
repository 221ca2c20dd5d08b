//! SQL shared by the store's areas: state predicates spelled as the indexes spell them, and
//! how a batch of leases is bound.

use errand_core::{LeaseRef, StoreError};

// State predicates exactly as the partial indexes of migration 0003 spell them (OR chains,
// see `errand_core::state_any`): SQLite uses a partial index only for a query that repeats
// its predicate, and an `IN` list in a predicate costs more per row.
pub(crate) const NON_FINAL: &str =
    "(state = 'pending' OR state = 'scheduled' OR state = 'available' OR state = 'running' OR state = 'retryable')";
pub(crate) const FINAL: &str =
    "(state = 'completed' OR state = 'discarded' OR state = 'cancelled')";
pub(crate) const DUE: &str = "(state = 'scheduled' OR state = 'retryable')";

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("errand types serialize to JSON")
}

/// `[[id, attempt], …]`, read back in SQL with `json_each`.
pub(crate) fn leases_json(leases: &[LeaseRef]) -> String {
    let pairs: Vec<[i64; 2]> = leases
        .iter()
        .map(|l| [l.id, i64::from(l.attempt)])
        .collect();
    to_json(&pairs)
}

/// The running jobs of the leases bound as `[[id, attempt], …]` ([`leases_json`]), for an
/// `UPDATE errand_jobs SET … {LEASE_MATCH}`: a lookup by id per lease (see
/// `outcome::complete`).
pub(crate) const LEASE_MATCH: &str =
    "FROM (SELECT value ->> 0 AS lease_id, value ->> 1 AS lease_attempt \
     FROM json_each(?)) AS u \
     WHERE id = u.lease_id AND attempt = u.lease_attempt AND state = 'running'";

/// The one row a write statement returns (`INSERT … RETURNING`), read with `fetch_all`: a
/// statement with `RETURNING` must be stepped to its end. Reset after its first row (what
/// `fetch_one` and `fetch_optional` do), it commits without SQLite's automatic checkpoint, and
/// the WAL grows without end (251 MiB after 20,000 single enqueues; `tests/sqlite_wal.rs`).
pub(crate) fn one<T>(rows: Vec<T>) -> Result<T, StoreError> {
    rows.into_iter()
        .next()
        .ok_or_else(|| StoreError::Database("a write statement returned no row".into()))
}
