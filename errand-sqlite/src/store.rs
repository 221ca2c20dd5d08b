//! Opening a SQLite store: URL, pragmas, pool, migrations.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use errand_core::{QueueSignals, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::direct::Direct;
use crate::error::db;
use crate::file::FileGuard;
use crate::migrate;

/// Rows a statement may buffer between its connection thread and the reader: a full claim
/// (up to ~1,000 jobs with the default prefetch) without stalling.
const ROW_BUFFER: usize = 2048;

/// Whether a connection going back to the pool is outside any transaction; one that is not
/// is closed instead of kept.
///
/// A transaction dropped without commit queues its `ROLLBACK`. When SQLite has already
/// rolled the transaction back itself (it does on a full disk, `SQLITE_FULL`, and on some
/// I/O errors), that `ROLLBACK` fails and sqlx keeps counting the connection as inside a
/// transaction: every later `BEGIN` on it then fails ("begin_with at non-zero transaction
/// depth"), and a maintenance service that drew it failed pass after pass.
async fn release_clean(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // Let the queued ROLLBACK run (commands run in order), then look again.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!("closing a SQLite connection left inside a failed transaction");
        return Ok(false);
    }
    Ok(true)
}

/// The SQLite store. Clones share one connection pool.
///
/// SQLite lets one connection write at a time; a writer that finds the file locked sleeps
/// in the busy handler (1, 2, 5, 10 … ms) and tries again. Within a process the store
/// queues its own writes instead (a fair async lock), so a claim never sleeps behind the
/// completer's write; the busy timeout remains for other processes on the same file.
///
/// ```no_run
/// # extern crate errand_sqlite as errand;
/// # async fn demo() -> Result<(), errand_core::StoreError> {
/// use errand::SqliteStore;
/// let store = SqliteStore::open("errand.db").await?; // creates and migrates the file
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads go through [`reader`](Self::reader), writes through a [`Writer`].
    pool: SqlitePool,
    /// The hot writes' own connection (see `direct`).
    direct: Direct,
    pub(crate) signals: QueueSignals,
    /// Held for every write this store makes (see the type's docs).
    writes: Arc<tokio::sync::Mutex<()>>,
    path: PathBuf,
    /// The file's identity at open, checked before writes.
    file: Arc<FileGuard>,
    /// Queues last seen metered (see `claim.rs`).
    pub(crate) metered: errand_core::MeteredSet,
    /// Whether this store has met workflows (inserted some, or a claim found that some
    /// exist: `claim::learn_workflows`): from then on its outcome batches settle the
    /// completions of steps with dependents themselves (`outcome.rs`); no trigger does.
    pub(crate) workflows_seen: Arc<std::sync::atomic::AtomicBool>,
    /// What the last poll saw of the queue records and due jobs (see `queue::with_available`).
    pub(crate) last_poll: Arc<std::sync::Mutex<Option<crate::queue::PollSeen>>>,
}

/// This process's turn to write, holding the pool and the store's own connection (`direct`)
/// to write with: the store's writes reach either only through one, so none can skip the
/// turn. Dropped, the next writer goes.
pub(crate) struct Writer<'a> {
    _turn: tokio::sync::MutexGuard<'a, ()>,
    pool: &'a SqlitePool,
    direct: &'a Direct,
}

impl Writer<'_> {
    /// Runs `f`, a write of about `rows` rows, on the store's own write connection in this
    /// turn: in place when it is short and the file is free, else on the connection's thread
    /// (see `direct`).
    pub(crate) async fn run<T, F>(&self, rows: usize, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if rows <= crate::direct::SHORT_ROWS {
            self.direct.run_short(f).await
        } else {
            self.direct.run(f).await
        }
    }

    /// Where one write statement runs (it commits by itself).
    pub(crate) fn pool(&self) -> &SqlitePool {
        self.pool
    }

    /// A write transaction, taking SQLite's write lock at once (`BEGIN IMMEDIATE`) so that
    /// what it reads cannot change before it writes.
    pub(crate) async fn begin(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }
}

/// Options for opening a [`SqliteStore`]; start with [`SqliteStore::builder`].
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    url: String,
    create_if_missing: bool,
    migrate: bool,
    max_connections: u32,
    busy_timeout: Duration,
}

impl SqliteStore {
    /// Opens (creating if needed) the file at `url` — a path or `sqlite://PATH` — and applies
    /// pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).open().await
    }

    /// Options for opening the file at `url`.
    pub fn builder(url: &str) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            url: url.to_owned(),
            create_if_missing: true,
            migrate: true,
            max_connections: 4,
            busy_timeout: Duration::from_secs(10),
        }
    }

    /// Waits for this process's turn to write (see the type's docs) and returns it as the
    /// [`Writer`] every write of the store goes through. Fails with [`StoreError::Lost`]
    /// when the file was deleted, replaced or truncated.
    pub(crate) async fn writer(&self) -> Result<Writer<'_>, StoreError> {
        self.file.check()?;
        // The writer ahead may be stuck for the busy timeout on a file that is gone: keep
        // looking at the file while waiting.
        let turn = self.writes.lock();
        tokio::pin!(turn);
        loop {
            tokio::select! {
                guard = &mut turn => {
                    return Ok(Writer { _turn: guard, pool: &self.pool, direct: &self.direct })
                }
                _ = tokio::time::sleep(crate::file::EVERY) => self.file.check()?,
            }
        }
    }

    /// The pool for reads, which need no turn (WAL readers never block the writer).
    /// Wakes what settling a workflow step's dependents may have made due, after a write
    /// that ended or revived a job outside the completion path (which counts the triggers'
    /// changes): every queue's producers and the scheduler. Operator actions and rescues
    /// are rare, so waking all costs less than asking which.
    pub(crate) fn settled_wake(&self) {
        self.signals.notify_all();
        self.signals.notify_scheduled();
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.pool
    }

    /// Applies pending migrations. Returns the versions applied (empty when up to date).
    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        migrate::run(&self.pool).await
    }

    /// The database's schema version and the version this build needs.
    pub async fn schema_version(&self) -> Result<(i64, i64), StoreError> {
        Ok((migrate::current_version(&self.pool).await?, migrate::LATEST))
    }

    /// Fails with [`StoreError::NotMigrated`] (or `TooNew`) unless the schema is exactly the
    /// version this build needs.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let (found, expected) = self.schema_version().await?;
        let location = format!("sqlite://{}", self.path.display());
        let migrate = format!("errand migrate --database-url {location}");
        StoreError::check_version(location, migrate, found, expected)
    }

    /// The connection pool, for a job's own queries on the same file.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A failure to open the file at `path` as a message that names the file and, for the
/// usual causes, says what to do.
fn naming(path: &Path, e: StoreError) -> StoreError {
    let StoreError::Database(source) = &e else {
        return e;
    };
    let code = match source.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(d)) => d.code().and_then(|c| c.parse::<i32>().ok()),
        _ => None,
    };
    let hint = match code.map(|c| c & 0xff) {
        Some(14) => ": does its folder exist, and may this process write there?",
        Some(26) => ": the file is not a SQLite database; point --database-url at errand's file",
        _ => "",
    };
    StoreError::Database(
        format!(
            "cannot open the SQLite database {}: {e}{hint}",
            path.display()
        )
        .into(),
    )
}

impl SqliteStoreBuilder {
    /// Create the file when it does not exist (default `true`). When `false`, a missing file
    /// is [`StoreError::Missing`].
    pub fn create_if_missing(mut self, yes: bool) -> Self {
        self.create_if_missing = yes;
        self
    }

    /// Apply pending migrations on open (default `true`). When `false`, an unmigrated file is
    /// [`StoreError::NotMigrated`].
    pub fn migrate(mut self, yes: bool) -> Self {
        self.migrate = yes;
        self
    }

    /// Connections in the pool (default 4). SQLite has one writer at a time; more connections
    /// only help concurrent readers.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long a write waits for another writer (another process) before failing
    /// (default 10 s).
    pub fn busy_timeout(mut self, d: Duration) -> Self {
        self.busy_timeout = d;
        self
    }

    /// Opens the store.
    pub async fn open(self) -> Result<SqliteStore, StoreError> {
        let path = crate::url::parse_location(&self.url)?;
        self.open_at(&path).await.map_err(|e| naming(&path, e))
    }

    async fn open_at(self, path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_owned();
        if !self.create_if_missing && !path.exists() {
            let url = format!("sqlite://{}", path.display());
            return Err(StoreError::Missing(format!(
                "the SQLite database {url} does not exist: check --database-url, or create it \
                 with `errand migrate --database-url {url}`"
            )));
        }
        let opts = SqliteConnectOptions::from_str("sqlite:")
            .map_err(db)?
            .filename(&path)
            .create_if_missing(self.create_if_missing)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(self.busy_timeout)
            .foreign_keys(false)
            // Rows a statement's thread may hand over before the reader takes them. At
            // sqlx's default of 50, a claim of 1,000 jobs stalled the thread twenty times,
            // each a wake-up of the reading task (while the claim kept the write lock).
            .row_buffer_size(ROW_BUFFER);
        if self.create_if_missing && !path.exists() {
            // Create the file with one connection; the pool's connections never create it,
            // so a connection opened after the file was deleted fails instead of starting
            // an empty database beside the worker (see `file`).
            use sqlx::{ConnectOptions, Connection};
            opts.clone()
                .connect()
                .await
                .map_err(db)?
                .close()
                .await
                .map_err(db)?;
        }
        let opts = opts.create_if_missing(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(self.max_connections)
            // A local file's connections do not go stale; sqlx's ping before every use
            // would be one more round trip to the connection's thread.
            .test_before_acquire(false)
            .after_release(|conn, _| Box::pin(release_clean(conn)))
            .min_connections(1)
            .connect_with(opts)
            .await
            .map_err(db)?;
        let direct = Direct::open(&path, self.busy_timeout)?;
        let store = SqliteStore {
            pool,
            direct,
            signals: QueueSignals::default(),
            writes: Arc::default(),
            file: Arc::new(FileGuard::new(&path)),
            path,
            metered: Default::default(),
            workflows_seen: Default::default(),
            last_poll: Default::default(),
        };
        if self.migrate {
            store.migrate().await?;
        } else {
            store.check_schema().await?;
        }
        Ok(store)
    }
}
