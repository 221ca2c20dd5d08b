//! Driver errors as store errors.

use errand_core::StoreError;

/// A driver error as a store error: SQLite refusing the data (`SQLITE_TOOBIG`,
/// `SQLITE_CONSTRAINT` including a trigger's `RAISE(ABORT)`, `SQLITE_MISMATCH`) is
/// [`StoreError::Rejected`]; the rest, a busy or locked file and I/O errors among them, may
/// pass on a retry.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    let refused = match &e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 18..=20)),
        _ => false,
    };
    if refused {
        StoreError::rejected(e)
    } else {
        StoreError::database(e)
    }
}
