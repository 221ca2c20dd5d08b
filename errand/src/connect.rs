//! Opening the store a URL names: [`connect`], or [`AnyStore::builder`] for the options.

use errand_core::StoreError;

use crate::{AnyStore, MemoryStore};

/// Opens the store `url` names, applying pending migrations: `sqlite://PATH` (also
/// `sqlite:PATH` or a plain file path; the file is created if missing), `postgres://…` or
/// `postgresql://…` (schema `errand`), or `memory://`. A scheme this build cannot open (an
/// unknown one, or one whose feature is off) is [`StoreError::InvalidUrl`] naming what it
/// opens. [`AnyStore::builder`] takes options (schema, migrations, pool size).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), errand::StoreError> {
/// let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "memory://".into());
/// # let url = "memory://";
/// let store = errand::connect(&url).await?;
/// let client = errand::Client::new(store.clone());
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<AnyStore, StoreError> {
    AnyStore::builder(url).open().await
}

/// Options for opening the store a URL names; start with [`AnyStore::builder`]. Each option
/// applies to the stores it makes sense for and is ignored by the others.
#[derive(Debug, Clone)]
pub struct AnyStoreBuilder {
    url: String,
    schema: Option<String>,
    migrate: bool,
    max_connections: Option<u32>,
    memory: bool,
}

impl AnyStore {
    /// Options for opening the store `url` names (see [`connect`] for the URLs).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), errand::StoreError> {
    /// // An operator tool: the schema from its flags, and no migrations behind anyone's back.
    /// let store = errand::AnyStore::builder("postgres://localhost/app")
    ///     .schema("jobs")
    ///     .migrate(false)
    ///     .max_connections(4)
    ///     .open()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(url: &str) -> AnyStoreBuilder {
        AnyStoreBuilder {
            url: url.to_owned(),
            schema: None,
            migrate: true,
            max_connections: None,
            memory: true,
        }
    }
}

impl AnyStoreBuilder {
    /// Postgres: the schema holding errand's tables (default `errand`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Whether to create what is missing (a SQLite file, a Postgres schema) and apply
    /// pending migrations (default `true`). With `false` the store must exist at the
    /// version this build needs, or opening fails saying how to migrate.
    pub fn migrate(mut self, yes: bool) -> Self {
        self.migrate = yes;
        self
    }

    /// The pool's size (default: the store's own default).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Whether `memory://` is accepted (default `true`). A tool working on a store another
    /// process uses refuses it: a memory store is empty and private to this process.
    pub fn allow_memory(mut self, yes: bool) -> Self {
        self.memory = yes;
        self
    }

    /// Opens the store.
    pub async fn open(self) -> Result<AnyStore, StoreError> {
        let url = self.url.as_str();
        let scheme = url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("memory") if self.memory => Ok(AnyStore::Memory(MemoryStore::new())),
            #[cfg(feature = "postgres")]
            Some("postgres" | "postgresql") => {
                let mut b = crate::PgStore::builder().url(url).migrate(self.migrate);
                if let Some(schema) = self.schema {
                    b = b.schema(schema);
                }
                if let Some(n) = self.max_connections {
                    b = b.max_connections(n);
                }
                b.open().await.map(AnyStore::Postgres)
            }
            // `sqlite:PATH` and plain paths have no `://`.
            #[cfg(feature = "sqlite")]
            Some("sqlite") | None => {
                let mut b = crate::SqliteStore::builder(url)
                    .create_if_missing(self.migrate)
                    .migrate(self.migrate);
                if let Some(n) = self.max_connections {
                    b = b.max_connections(n);
                }
                b.open().await.map(AnyStore::Sqlite)
            }
            other => Err(StoreError::InvalidUrl {
                url: errand_core::redact_url(url),
                reason: format!(
                    "this build of errand opens {}; not {}",
                    opened_schemes(self.memory),
                    other.map_or("a path".to_owned(), |s| format!("{s}://")),
                ),
            }),
        }
    }
}

fn opened_schemes(memory: bool) -> String {
    let files = match (cfg!(feature = "sqlite"), cfg!(feature = "postgres")) {
        (true, true) => "sqlite://PATH (or a plain file path), postgres:// and postgresql:// URLs",
        (true, false) => {
            "sqlite://PATH (or a plain file path) (Postgres needs the `postgres` feature)"
        }
        (false, true) => "postgres:// and postgresql:// URLs (SQLite needs the `sqlite` feature)",
        (false, false) => "no database (enable the `sqlite` or `postgres` feature)",
    };
    if memory {
        format!("{files}, and memory://")
    } else {
        format!("{files} (memory:// holds nothing another process could see)")
    }
}
