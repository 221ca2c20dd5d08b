//! Versioned, embedded migrations, applied under the write lock so concurrent processes
//! migrate once.

use errand_core::StoreError;
use sqlx::{Executor, SqlitePool};

use crate::error::db;

/// (version, SQL), in order. Append only: a released migration never changes.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_jobs.sql")),
    (2, include_str!("../migrations/0002_state_indexes.sql")),
    (3, include_str!("../migrations/0003_or_predicates.sql")),
    (4, include_str!("../migrations/0004_queues.sql")),
    (5, include_str!("../migrations/0005_results.sql")),
    (6, include_str!("../migrations/0006_unique.sql")),
    (7, include_str!("../migrations/0007_metered.sql")),
    (8, include_str!("../migrations/0008_leaders.sql")),
    (9, include_str!("../migrations/0009_audit.sql")),
    (10, include_str!("../migrations/0010_workers.sql")),
    (11, include_str!("../migrations/0011_tallies.sql")),
    (12, include_str!("../migrations/0012_workflows.sql")),
    (13, include_str!("../migrations/0013_ids.sql")),
];

/// The schema version this build needs.
pub(crate) const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The schema version of the database (0 when errand never migrated it).
pub(crate) async fn current_version(pool: &SqlitePool) -> Result<i64, StoreError> {
    let exists: Option<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'errand_schema'",
    )
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    if exists.is_none() {
        return Ok(0);
    }
    let (v,): (Option<i64>,) = sqlx::query_as("SELECT max(version) FROM errand_schema")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    Ok(v.unwrap_or(0))
}

/// Applies every migration newer than the database's version. Returns the versions applied.
///
/// Statements go through `Executor::execute` on the transaction, not `raw_sql`: the latter
/// makes this future not `Send` for every lifetime, and `tokio::spawn(SqliteStore::open(…))`
/// would not compile.
pub(crate) async fn run(pool: &SqlitePool) -> Result<Vec<i64>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    tx.execute(
        "CREATE TABLE IF NOT EXISTS errand_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .await
    .map_err(db)?;
    let (have,): (Option<i64>,) = sqlx::query_as("SELECT max(version) FROM errand_schema")
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let have = have.unwrap_or(0);
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > have) {
        tx.execute(*sql).await.map_err(db)?;
        sqlx::query("INSERT INTO errand_schema (version, applied_at) VALUES (?, datetime('now'))")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        applied.push(*version);
    }
    tx.commit().await.map_err(db)?;
    Ok(applied)
}
