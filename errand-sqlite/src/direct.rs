//! The store's hot writes on a connection of their own: one rusqlite connection, used in
//! place for a short write and by a thread of its own for the rest.
//!
//! Through sqlx every statement is several hand-overs between the task and sqlx-sqlite's
//! connection thread (the command, each row, the end), each a thread wake-up, around a pool
//! acquire: on this project's 2-core VMs a single insert cost ~95 µs through sqlx where
//! rusqlite's own call costs ~15–25 µs, and the profile of errand's single enqueue was two
//! thirds kernel time in wake-ups and context switches. So:
//!
//! - a **short** write (at most [`SHORT_ROWS`] rows) runs in place, on the calling task's thread,
//!   without waiting for a lock: the connection's busy timeout is off for it, and a file
//!   locked by another connection (another process, or the application's own transaction on
//!   the sqlx pool) hands the write to the thread below instead of blocking the runtime;
//! - a **long** write (a claim, a batch of completions or inserts: up to a few ms) is one
//!   call to the thread, which waits for the file as long as the store's busy timeout;
//! - the connection does not checkpoint when it commits (an `fsync` in place would stall the
//!   runtime's thread): the thread checkpoints it (`PASSIVE`) once [`CHECKPOINT_AFTER_ROWS`]
//!   rows changed or [`CHECKPOINT_AFTER_WRITES`] writes were made since the last, which keeps
//!   the WAL about as small as SQLite's own automatic checkpoint does (`tests/sqlite_wal.rs`).
//!
//! Only the writes a worker and a client make all the time come here (inserts without keys,
//! claims, completions); everything else, and the application's own transactions (`tx.rs`),
//! stays on the sqlx pool. Both are connections to the same file: SQLite's locks keep them
//! apart, and the store's write turn (`SqliteStore::writer`) is held around every call, so
//! this process's writers queue instead of meeting in the busy handler.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use errand_core::StoreError;
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// Prepared statements kept: the completion sizes (11), the claim, the insert and a few more.
const STATEMENTS_CACHED: usize = 64;

/// Rows a write may touch and still run in place: a claim or an insert costs SQLite ~2–5 µs
/// a row, so at most ~150 µs on the runtime's thread.
pub(crate) const SHORT_ROWS: usize = 32;

/// Rows changed, or writes made, between two checkpoints: on the order of SQLite's automatic
/// checkpoint (every 1,000 WAL pages; a single insert writes ~5). Every 256 rows cost 5–10 %
/// of the process phase in `fsync`s; past 1,024 nothing more was measured (`errand bench
/// --phases process`, alternating). 20,000 single enqueues leave a ~6 MiB WAL (the
/// checkpoint runs beside the writes, so it does not always catch up to restart the WAL).
const CHECKPOINT_AFTER_ROWS: u64 = 1024;
const CHECKPOINT_AFTER_WRITES: u64 = 100;

type Call = Box<dyn FnOnce() + Send>;

/// The connection and its thread; clones share them. The thread ends when the last handle
/// is dropped, and the connection with it.
#[derive(Clone)]
pub(crate) struct Direct {
    conn: Arc<Mutex<Connection>>,
    calls: mpsc::Sender<Call>,
    busy_timeout: Duration,
    checkpointed: Arc<Checkpointed>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Direct")
    }
}

/// A rusqlite error as a store error, classified as `error::db` classifies sqlx's.
pub(crate) fn lite(e: rusqlite::Error) -> StoreError {
    let refused = match &e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(f.extended_code & 0xff, 18..=20),
        rusqlite::Error::ToSqlConversionFailure(_) => true,
        _ => false,
    };
    if refused {
        StoreError::rejected(e)
    } else {
        StoreError::database(e)
    }
}

/// Prepares `sql` on the store's connection (from its cache), reporting it as an event of
/// target `errand_sqlite::query` as sqlx reports its statements as `sqlx::query`, so that what
/// counts a process's statements (`errand bench`'s idle phase) counts these too. Disabled, the
/// event costs nothing.
pub(crate) fn prepare<'c>(
    c: &'c Connection,
    sql: &str,
) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
    tracing::debug!(target: "errand_sqlite::query", statement = sql);
    c.prepare_cached(sql).map_err(lite)
}

/// Whether `e` is SQLite's "the file is locked by another writer".
fn is_busy(e: &StoreError) -> bool {
    let StoreError::Database(source) = e else {
        return false;
    };
    matches!(
        source.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(f, _)) if f.code == ErrorCode::DatabaseBusy
    )
}

fn gone() -> StoreError {
    StoreError::Database("the SQLite store's writer thread stopped; open the store again".into())
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f`, turning a panic into an error and rolling back a transaction it left open (it
/// failed between `BEGIN` and `COMMIT`), so the next call starts clean.
fn guarded<T>(
    conn: &mut Connection,
    f: &mut impl FnMut(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)));
    if !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::warn!(error = %e, "could not roll back a failed SQLite write");
        }
    }
    out.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(StoreError::Database(
            format!("a SQLite write panicked: {what}").into(),
        ))
    })
}

/// What the connection wrote since its last checkpoint.
#[derive(Debug, Default)]
struct Checkpointed {
    /// `total_changes` at the last checkpoint.
    changes: AtomicU64,
    /// Writes (calls, each one or a few commits) since the last checkpoint.
    writes: AtomicU64,
}

impl Checkpointed {
    /// Counts one write; whether a checkpoint is due (see the module's docs).
    fn wrote(&self, conn: &Connection) -> bool {
        let writes = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        writes >= CHECKPOINT_AFTER_WRITES
            || conn
                .total_changes()
                .saturating_sub(self.changes.load(Ordering::Relaxed))
                >= CHECKPOINT_AFTER_ROWS
    }

    /// Checkpoints `conn` if due after the write it just made.
    fn after_write(&self, conn: &Connection) {
        if !self.wrote(conn) {
            return;
        }
        self.changes.store(conn.total_changes(), Ordering::Relaxed);
        self.writes.store(0, Ordering::Relaxed);
        let checkpoint = "PRAGMA wal_checkpoint(PASSIVE)";
        let ran =
            prepare(conn, checkpoint).and_then(|mut st| st.query_row([], |_| Ok(())).map_err(lite));
        if let Err(e) = ran {
            tracing::debug!(error = %e, "SQLite checkpoint did not run");
        }
    }
}

impl Direct {
    /// Opens the existing, migrated file at `path` (never creating it: see `file`) and starts
    /// the thread.
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> Result<Direct, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(lite)?;
        conn.busy_timeout(busy_timeout).map_err(lite)?;
        // The journal mode is the file's (the pool set WAL); the rest is per connection.
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; \
             PRAGMA wal_autocheckpoint = 0;",
        )
        .map_err(lite)?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
        let conn = Arc::new(Mutex::new(conn));
        let (calls, queue) = mpsc::channel::<Call>();
        let checkpointed = Arc::new(Checkpointed {
            changes: AtomicU64::new(lock(&conn).total_changes()),
            writes: AtomicU64::new(0),
        });
        let (checked, marks) = (conn.clone(), checkpointed.clone());
        std::thread::Builder::new()
            .name("errand-sqlite".into())
            .spawn(move || {
                for call in queue {
                    call();
                    marks.after_write(&lock(&checked));
                }
            })
            .map_err(StoreError::database)?;
        Ok(Direct {
            conn,
            calls,
            busy_timeout,
            checkpointed,
        })
    }

    /// Runs the long write `f` on the thread and returns what it returned.
    pub(crate) async fn run<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let conn = self.conn.clone();
        let call: Call = Box::new(move || {
            let _ = done.send(guarded(&mut lock(&conn), &mut f));
        });
        self.calls.send(call).map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    /// Runs the short write `f` in place when the file is free, else on the thread (see the
    /// module's docs). `f` may run twice: the first run, when it met a locked file, wrote
    /// nothing that a second run would not find (one statement, or a transaction that could
    /// not begin).
    pub(crate) async fn run_short<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        // The write turn is held, so the connection is free unless a call handed to the
        // thread by a caller that gave up still runs: then the thread takes this one too.
        let in_place = match self.conn.try_lock() {
            Ok(mut conn) => Some(self.in_place(&mut conn, &mut f)),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                Some(self.in_place(&mut p.into_inner(), &mut f))
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        match in_place {
            Some(Err(e)) if is_busy(&e) => self.run(f).await,
            Some(out) => out,
            None => self.run(f).await,
        }
    }

    fn in_place<T>(
        &self,
        conn: &mut Connection,
        f: &mut impl FnMut(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // No waiting in the busy handler on the runtime's thread.
        if let Err(e) = conn.busy_timeout(Duration::ZERO) {
            return Err(lite(e));
        }
        let out = guarded(conn, f);
        if let Err(e) = conn.busy_timeout(self.busy_timeout) {
            tracing::warn!(error = %e, "could not restore the SQLite busy timeout");
        }
        if self.checkpointed.wrote(conn) {
            // The thread checkpoints after each call it runs: give it an empty one.
            let _ = self.calls.send(Box::new(|| {}));
        }
        out
    }
}

/// Rows per statement of [`insert_rows`]: 32 steps are 640 parameters, under SQLite's 999
/// of old builds (32,766 today).
pub(crate) const ROWS_PER_INSERT: usize = 32;

/// `INSERT INTO table (columns) VALUES (…), (…)` with `rows` rows of numbered slots.
pub(crate) fn insert_sql(
    table: &str,
    columns: &[&str],
    rows: usize,
    first_id: Option<&str>,
) -> String {
    let row = |r: usize| {
        let mut slots: Vec<String> = (1..=columns.len())
            .map(|i| format!("?{}", r * columns.len() + i))
            .collect();
        if let Some(first) = first_id {
            // The first row's id from `first`; the next ones follow it (NULL: max + 1).
            slots.insert(
                0,
                if r == 0 {
                    first.to_owned()
                } else {
                    "NULL".into()
                },
            );
        }
        format!("({})", slots.join(", "))
    };
    let values: Vec<String> = (0..rows).map(row).collect();
    let id = if first_id.is_some() { "id, " } else { "" };
    format!(
        "INSERT INTO {table} ({id}{}) VALUES {}",
        columns.join(", "),
        values.join(", ")
    )
}

/// Inserts `rows` into `table` on the store's connection, [`ROWS_PER_INSERT`] to a prepared
/// statement and the rest one by one, and returns the id of each row in order (the table's
/// rowids are allocated one after another within a statement, under the write lock the
/// caller holds). A statement per row spent a fifth of a 10,000-step workflow's insert
/// starting statements (at statement level: 76–84 ms per row, 57–63 ms by 32).
/// `first_id`, when given, is the SQL of the first row's id (see `insert::FIRST_ID`): once
/// that row is in, the next ones take the table's `max(id) + 1`. A single row carries it in
/// its statement; for more it is read first, and written as a literal into the first
/// statement only when it is not `NULL` (a subquery of the table being inserted into makes
/// SQLite stage a multi-row insert in a temporary table: batches ~12 % slower).
pub(crate) fn insert_rows<V: rusqlite::ToSql>(
    c: &rusqlite::Connection,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<V>>,
    first_id: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let mut first: Option<String> = match first_id {
        None => None,
        Some(sql) if rows.len() == 1 => Some(sql.to_owned()),
        Some(sql) => prepare(c, &format!("SELECT {sql}"))?
            .query_row([], |r| r.get::<_, Option<i64>>(0))
            .map_err(lite)?
            .map(|id| id.to_string()),
    };
    let mut ids = Vec::with_capacity(rows.len());
    // Statements of ROWS_PER_INSERT rows, then one per row left. Each size's statement is
    // prepared once a call and kept (built, or even looked up in the cache, per statement,
    // a 32-row text of ~350 placeholders cost a batch 10–30 %); only the first statement
    // carries the first row's own id, when it has one.
    let (full, rest) = rows.split_at(rows.len() - rows.len() % ROWS_PER_INSERT);
    let mut kept: [Option<rusqlite::CachedStatement<'_>>; 2] = [None, None];
    for group in full.chunks(ROWS_PER_INSERT).chain(rest.chunks(1)) {
        let n = group.len();
        let params = rusqlite::params_from_iter(group.iter().flatten());
        match first.take() {
            Some(first) => {
                let sql = insert_sql(table, columns, n, Some(&first));
                prepare(c, &sql)?.execute(params).map_err(lite)?;
            }
            None => {
                let st = match &mut kept[usize::from(n == 1)] {
                    Some(st) => st,
                    slot => slot.insert(prepare(c, &insert_sql(table, columns, n, None))?),
                };
                st.execute(params).map_err(lite)?;
            }
        }
        let last = c.last_insert_rowid();
        ids.extend(last + 1 - n as i64..=last);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn opened() -> (Direct, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("direct.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER NOT NULL);")
            .unwrap();
        (Direct::open(&path, Duration::from_secs(5)).unwrap(), dir)
    }

    fn count(c: &mut Connection) -> Result<i64, StoreError> {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .map_err(lite)
    }

    #[tokio::test]
    async fn a_write_that_panics_is_an_error_and_the_connection_goes_on() {
        let (direct, _dir) = opened().await;
        for short in [false, true] {
            let panicked = |_: &mut Connection| -> Result<(), StoreError> { panic!("boom") };
            let e = if short {
                direct.run_short(panicked).await
            } else {
                direct.run(panicked).await
            }
            .expect_err("a panic is an error");
            assert!(e.to_string().contains("panicked: boom"), "{e}");
        }
        let n = direct
            .run(|c| {
                c.execute("INSERT INTO t VALUES (1)", []).map_err(lite)?;
                count(c)
            })
            .await
            .expect("the thread and the connection outlive the panics");
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn a_write_that_fails_inside_a_transaction_is_rolled_back() {
        let (direct, _dir) = opened().await;
        for short in [false, true] {
            let failing = |c: &mut Connection| -> Result<(), StoreError> {
                c.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
                    .map_err(lite)?;
                // NOT NULL: fails with the transaction open.
                c.execute("INSERT INTO t VALUES (NULL)", []).map_err(lite)?;
                c.execute_batch("COMMIT").map_err(lite)
            };
            let e = if short {
                direct.run_short(failing).await
            } else {
                direct.run(failing).await
            }
            .expect_err("the constraint fails the write");
            assert!(matches!(e, StoreError::Rejected(_)), "{e:?}");
        }
        // Nothing of either attempt stayed, and the next write is not inside their
        // transaction.
        let n = direct
            .run_short(|c| {
                assert!(c.is_autocommit(), "a transaction was left open");
                count(c)
            })
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
