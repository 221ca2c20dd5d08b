//! Opening the store a `--database-url` names: SQLite (`sqlite://PATH` or a path) or
//! PostgreSQL (`postgres://…`, tables in `--schema`).

use errand::{AnyStore, StoreError};

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

/// Opens an existing, migrated store (SQLite or Postgres; not `memory://`, which no other
/// process can see). `for_migrate` creates the SQLite file (or the Postgres schema) and
/// applies pending migrations instead of checking them.
pub async fn open_store(
    url: &str,
    schema: &str,
    for_migrate: bool,
) -> Result<AnyStore, StoreError> {
    AnyStore::builder(url)
        .schema(schema)
        .migrate(for_migrate)
        .max_connections(if is_postgres(url) { 4 } else { 2 })
        .allow_memory(false)
        .open()
        .await
}
