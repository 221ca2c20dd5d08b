//! Versioned, embedded migrations per schema, serialized across processes by an advisory
//! lock held for the migrating transaction.
//!
//! SQL strings are bound to locals before they are used: a `&format!(…)` temporary held
//! across an `.await` makes the future not `Send` for every lifetime, and then
//! `tokio::spawn(PgStore::connect(…))` does not compile.

use errand_core::StoreError;
use sqlx::{Executor, PgPool};

use crate::error::db;

/// (version, SQL with `{schema}` placeholders), in order. Append only.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_jobs.sql")),
    (2, include_str!("../migrations/0002_state_indexes.sql")),
    (3, include_str!("../migrations/0003_queues.sql")),
    (4, include_str!("../migrations/0004_results.sql")),
    (5, include_str!("../migrations/0005_unique.sql")),
    (6, include_str!("../migrations/0006_metered.sql")),
    (7, include_str!("../migrations/0007_leaders.sql")),
    (8, include_str!("../migrations/0008_claim_plans.sql")),
    (9, include_str!("../migrations/0009_audit.sql")),
    (10, include_str!("../migrations/0010_workers.sql")),
    (11, include_str!("../migrations/0011_tallies.sql")),
    (12, include_str!("../migrations/0012_claim_floor.sql")),
    (13, include_str!("../migrations/0013_workflows.sql")),
];

/// The schema version this build needs.
pub(crate) const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The version of `schema` (0 when errand never migrated it).
pub(crate) async fn current_version(pool: &PgPool, schema: &str) -> Result<i64, StoreError> {
    let table_name = format!("\"{schema}\".errand_schema");
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&table_name)
        .fetch_one(pool)
        .await
        .map_err(db)?;
    if table.is_none() {
        return Ok(0);
    }
    let sql = format!("SELECT max(version) FROM {table_name}");
    let v: Option<i64> = sqlx::query_scalar(&sql).fetch_one(pool).await.map_err(db)?;
    Ok(v.unwrap_or(0))
}

/// Applies every migration newer than the schema's version. Returns the versions applied.
pub(crate) async fn run(pool: &PgPool, schema: &str) -> Result<Vec<i64>, StoreError> {
    let q = format!("\"{schema}\"");
    let lock_key = format!("errand-migrate:{schema}");
    // `IF NOT EXISTS` on an existing schema or table sends a NOTICE ("already exists,
    // skipping") that sqlx logs at INFO on every start: keep this transaction's quiet.
    let setup = format!(
        "SET LOCAL client_min_messages = warning;
         CREATE SCHEMA IF NOT EXISTS {q};
         CREATE TABLE IF NOT EXISTS {q}.errand_schema (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
    );
    let current = format!("SELECT max(version) FROM {q}.errand_schema");
    let record = format!("INSERT INTO {q}.errand_schema (version) VALUES ($1)");
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(&lock_key)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.execute(setup.as_str()).await.map_err(db)?;
    let have: Option<i64> = sqlx::query_scalar(&current)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > have.unwrap_or(0)) {
        let body = sql.replace("{schema}", &q);
        tx.execute(body.as_str()).await.map_err(db)?;
        sqlx::query(&record)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        applied.push(*version);
    }
    tx.commit().await.map_err(db)?;
    Ok(applied)
}
