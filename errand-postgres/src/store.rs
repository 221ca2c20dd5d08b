//! Connecting a Postgres store: URL, schema, pool, migrations, the listener.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use errand_core::{redact_url, scrub, QueueSignals, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::claim_floor::ClaimFloors;
use crate::clock::DbClock;
use crate::error::{probe, unreachable_db};
use crate::sql::Sql;
use crate::{listener, migrate};

/// Connections idle at least this long are pinged before use (pgxpool's rule).
pub(crate) const PING_IF_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// The PostgreSQL store. Clones share the pool, the schema and the listener.
///
/// ```no_run
/// # extern crate errand_postgres as errand;
/// # async fn demo() -> Result<(), errand_core::StoreError> {
/// use errand::PgStore;
/// let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) schema: String,
    pub(crate) sql: Sql,
    pub(crate) channel: String,
    pub(crate) signals: QueueSignals,
    pub(crate) listener: OnceLock<tokio::task::JoinHandle<()>>,
    /// Whether this process's `LISTEN` connection is listening now (see `listener.rs`),
    /// shared like the signals.
    pub(crate) listening: Arc<std::sync::atomic::AtomicBool>,
    /// The database's clock, shared with handles made by [`PgStore::with_own_pool`].
    pub(crate) clock: Arc<DbClock>,
    /// Queues last seen metered (see `claim.rs`), shared like the clock.
    pub(crate) metered: errand_core::MeteredSet,
    /// Where this process's claims of each queue start (see `claim_floor.rs`).
    pub(crate) floors: Arc<ClaimFloors>,
    /// Whether a claim of this process (any handle) has taken a workflow step: until one
    /// has, outcome batches use [`Sql::finish_lean`], as nothing they end can be a step.
    pub(crate) steps_claimed: Arc<std::sync::atomic::AtomicBool>,
    /// Connections kept out of the pool for single statements (see `lane.rs`).
    pub(crate) lane: crate::lane::Lane,
    /// Taken shared by plain outcome batches and alone by lease extensions and releases,
    /// shared like the clock: the plain outcome statements lock rows in the order their
    /// plan meets them (`Sql::finish`), so this process never runs one beside a statement
    /// that locks overlapping rows in id order (which could deadlock them). A batch that
    /// finds it taken alone uses the statement that locks in id order (`outcome.rs`).
    pub(crate) running_rows: Arc<tokio::sync::RwLock<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self.listener.get() {
            h.abort();
        }
    }
}

/// Options for a [`PgStore`]; start with [`PgStore::builder`].
#[derive(Debug, Clone)]
pub struct PgStoreBuilder {
    url: Option<String>,
    pool: Option<PgPool>,
    schema: String,
    migrate: bool,
    max_connections: u32,
}

/// Schema names are identifiers we quote ourselves: keep them plain.
fn check_schema(schema: &str) -> Result<(), StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidSchema {
            schema: schema.to_owned(),
            reason: "use 1–48 characters of a-z, 0-9 and _, not starting with a digit (--schema)"
                .into(),
        })
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) with a pool of 10 connections,
    /// schema `errand`, and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder().url(url).open().await
    }

    /// Uses the application's pool (schema `errand`) and applies pending migrations.
    ///
    /// The pool keeps its own options. sqlx pings a connection before every use by default
    /// (one more round trip per statement); pools errand opens itself ping only connections
    /// idle for a second or more, and an application pool can do the same with
    /// `PgPoolOptions::test_before_acquire(false)` and a `before_acquire` hook.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        Self::builder().pool(pool).open().await
    }

    /// Options: URL or pool, schema, migrations, pool size.
    pub fn builder() -> PgStoreBuilder {
        PgStoreBuilder {
            url: None,
            pool: None,
            schema: "errand".into(),
            migrate: true,
            max_connections: 10,
        }
    }

    /// Applies pending migrations (safe when several processes do it at once). Returns the
    /// versions applied.
    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        migrate::run(&self.inner.pool, &self.inner.schema).await
    }

    /// The schema's version and the version this build needs.
    pub async fn schema_version(&self) -> Result<(i64, i64), StoreError> {
        let found = migrate::current_version(&self.inner.pool, &self.inner.schema).await?;
        Ok((found, migrate::LATEST))
    }

    /// Fails with [`StoreError::NotMigrated`] (or `TooNew`) unless the schema is exactly the
    /// version this build needs.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let (found, expected) = self.schema_version().await?;
        let url = self.shown_url();
        let schema = &self.inner.schema;
        let location = format!("{url} (schema \"{schema}\")");
        let migrate = format!("errand migrate --database-url '{url}' --schema {schema}");
        StoreError::check_version(location, migrate, found, expected)
    }

    /// The database's URL as the pool connects to it, password left out: for messages.
    pub(crate) fn shown_url(&self) -> String {
        let o = self.inner.pool.connect_options();
        format!(
            "postgres://{}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or(o.get_username())
        )
    }

    /// The connection pool, for the application's and the jobs' own queries.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Wakes, in this process, what settling a workflow step's dependents may have made
    /// due (the trigger's NOTIFYs reach listening processes only): every queue's producers
    /// and the scheduler. Rare (ends of jobs with dependents, hand retries and cancels), so
    /// waking all costs less than asking which.
    pub(crate) fn settled_wake(&self) {
        self.inner.signals.notify_all();
        self.inner.signals.notify_scheduled();
    }

    /// The schema holding errand's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// A handle on the same schema with a pool of its own (at most `max` connections,
    /// opened on first use by the runtime that uses them), sharing this handle's wake-ups.
    /// The worker's keeper thread uses one: a pool's sockets belong to the runtime that
    /// opened them and stall when that runtime's threads are all held by job code.
    pub(crate) fn with_own_pool(&self, max: u32) -> PgStore {
        let opts = (*self.inner.pool.connect_options()).clone();
        let pool = pool_options(max).connect_lazy_with(opts);
        PgStore {
            inner: Arc::new(Inner {
                pool,
                schema: self.inner.schema.clone(),
                sql: Sql::new(&self.inner.schema),
                channel: self.inner.channel.clone(),
                signals: self.inner.signals.clone(),
                listener: OnceLock::new(),
                listening: self.inner.listening.clone(),
                clock: self.inner.clock.clone(),
                metered: self.inner.metered.clone(),
                floors: self.inner.floors.clone(),
                steps_claimed: self.inner.steps_claimed.clone(),
                lane: Default::default(),
                running_rows: self.inner.running_rows.clone(),
            }),
        }
    }

    /// A connection for a hot statement: one of the lane's (no ping when it goes back,
    /// see `lane.rs`), else the pool's.
    pub(crate) async fn held(&self) -> Result<crate::lane::Held<'_>, StoreError> {
        crate::lane::Held::take(&self.inner.lane, &self.inner.pool).await
    }

    /// Whether this process's `LISTEN` connection is listening now: `NOTIFY`s from any process
    /// (this one's inserts included) wake its workers. `false` before [`listen`](Self::listen)
    /// and while the connection is being re-established, when workers are woken in-process
    /// and by polling instead. A health check may report it.
    pub fn is_listening(&self) -> bool {
        self.inner
            .listening
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts this process's `LISTEN` connection (once; later calls do nothing). Workers
    /// call it when they start; a process that only enqueues never needs it.
    pub fn listen(&self) {
        let inner = Arc::downgrade(&self.inner);
        let opts = self.inner.pool.connect_options();
        let channel = self.inner.channel.clone();
        self.inner
            .listener
            .get_or_init(|| tokio::spawn(listener::run(inner, (*opts).clone(), channel)));
    }
}

impl PgStoreBuilder {
    /// Database URL (ignored when a pool is given).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Shares the application's pool.
    pub fn pool(mut self, pool: PgPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Schema for errand's tables (default `errand`; a-z, 0-9, _).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Apply pending migrations on open (default `true`); when `false`, an unmigrated schema
    /// is [`StoreError::NotMigrated`].
    pub fn migrate(mut self, yes: bool) -> Self {
        self.migrate = yes;
        self
    }

    /// Pool size when connecting by URL (default 10).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Connects (or adopts the pool) and checks or migrates the schema.
    pub async fn open(self) -> Result<PgStore, StoreError> {
        check_schema(&self.schema)?;
        let pool = match (self.pool, self.url) {
            (Some(pool), _) => pool,
            (None, Some(url)) => {
                let opts =
                    PgConnectOptions::from_str(&url).map_err(|e| StoreError::InvalidUrl {
                        url: redact_url(&url),
                        reason: scrub(&e.to_string(), &url),
                    })?;
                let opts = opts.application_name(&format!("errand:{}", std::process::id()));
                // One direct attempt first: the pool retries a refused connection until its
                // acquire timeout and then reports only that it timed out.
                probe(&opts, &url).await?;
                pool_options(self.max_connections)
                    .connect_with(opts)
                    .await
                    .map_err(|e| unreachable_db(&url, e))?
            }
            (None, None) => {
                return Err(StoreError::InvalidUrl {
                    url: String::new(),
                    reason: "give PgStore::builder() a url(…) or a pool(…)".into(),
                })
            }
        };
        let store = PgStore {
            inner: Arc::new(Inner {
                sql: Sql::new(&self.schema),
                channel: format!("errand_{}", self.schema),
                schema: self.schema,
                pool,
                signals: QueueSignals::default(),
                listener: OnceLock::new(),
                listening: Arc::default(),
                clock: Arc::default(),
                metered: Default::default(),
                floors: Default::default(),
                steps_claimed: Arc::default(),
                lane: Default::default(),
                running_rows: Arc::default(),
            }),
        };
        if self.migrate {
            store.migrate().await?;
        } else {
            store.check_schema().await?;
        }
        Ok(store)
    }
}

/// The options of every pool errand opens itself.
fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        // sqlx pings every connection it hands out: one more round trip per statement.
        // Like pgxpool, ping only connections idle for a while; a connection that died
        // sooner fails its statement, which errand's loops retry.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < PING_IF_IDLE_FOR {
                    return Ok(true);
                }
                Ok(sqlx::Connection::ping(conn).await.is_ok())
            })
        })
}
