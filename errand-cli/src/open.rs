//! Opening the store a `--database-url` names: SQLite (`sqlite://PATH` or a path) or
//! PostgreSQL (`postgres://…`, tables in `--schema`).

use std::sync::Arc;

use errand::store::Store;
use errand::{PgStore, SqliteStore, StoreError};

/// An opened store of either kind.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A SQLite file.
    Sqlite(SqliteStore),
    /// A Postgres schema.
    Postgres(PgStore),
}

impl Backend {
    /// The store behind the common contract.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(s) => Arc::new(s.clone()),
            Backend::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// The schema version found and the one this build needs.
    pub async fn schema_version(&self) -> Result<(i64, i64), StoreError> {
        match self {
            Backend::Sqlite(s) => s.schema_version().await,
            Backend::Postgres(s) => s.schema_version().await,
        }
    }
}

pub(crate) fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A fresh folder beside the SQLite file `url` names (so scratch work runs on that disk),
/// removed when dropped.
pub(crate) fn scratch_dir_beside(url: &str, prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let parent = std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    tempfile::Builder::new().prefix(prefix).tempdir_in(parent)
}

/// Opens an existing, migrated store. `for_migrate` creates the SQLite file (or the Postgres
/// schema) and applies pending migrations instead of checking them.
pub async fn open_store(url: &str, schema: &str, for_migrate: bool) -> Result<Backend, StoreError> {
    if let Some((scheme, _)) = url.split_once("://") {
        if !is_postgres(url) && scheme != "sqlite" {
            return Err(StoreError::InvalidUrl {
                url: errand::store::redact_url(url),
                reason: format!(
                    "errand opens sqlite://PATH (or a plain file path), postgres:// and \
                     postgresql:// URLs, not {scheme}://"
                ),
            });
        }
    }
    if is_postgres(url) {
        return PgStore::builder()
            .url(url)
            .schema(schema)
            .max_connections(4)
            .migrate(for_migrate)
            .open()
            .await
            .map(Backend::Postgres);
    }
    SqliteStore::builder(url)
        .create_if_missing(for_migrate)
        .migrate(for_migrate)
        .max_connections(2)
        .open()
        .await
        .map(Backend::Sqlite)
}
