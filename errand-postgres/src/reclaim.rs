//! Reclaiming dead row versions (`Store::reclaim`, run by the maintenance leader every few
//! seconds): a `VACUUM` of the jobs table once it holds more than the threshold.
//!
//! Every job leaves two dead versions of its row (claimed, finished), and every dead version
//! leaves entries in the indexes the claims and outcomes read. Autovacuum visits a database
//! once a minute (`autovacuum_naptime`, server-wide), so a queue running 800 jobs/s carries
//! up to 96,000 of them whatever its table's thresholds (migration 12 sets those by count,
//! not by the table's size). The leader vacuums in between: the table's pages written since
//! the last vacuum, its indexes only when enough dead entries make it worth it (Postgres
//! decides). `SKIP_LOCKED`: when autovacuum is already at it, this pass does nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use errand_core::StoreError;
use sqlx::Executor;

use crate::error::db;
use crate::store::PgStore;

/// One warning per process when the role may not vacuum the table.
static NOT_OWNER_TOLD: AtomicBool = AtomicBool::new(false);

pub(crate) async fn reclaim(s: &PgStore, dead_rows: u64) -> Result<bool, StoreError> {
    let table = format!("\"{}\".jobs", s.inner.schema);
    let (dead, owner): (i64, bool) = sqlx::query_as(
        "SELECT coalesce(st.n_dead_tup, 0), pg_has_role(c.relowner, 'USAGE')
         FROM pg_class c LEFT JOIN pg_stat_all_tables st ON st.relid = c.oid
         WHERE c.oid = $1::regclass",
    )
    .bind(&table)
    .fetch_one(&s.inner.pool)
    .await
    .map_err(db)?;
    if u64::try_from(dead).unwrap_or(0) <= dead_rows {
        return Ok(false);
    }
    if !owner {
        if !NOT_OWNER_TOLD.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                table,
                dead,
                "the jobs table holds many dead rows and this role may not VACUUM it (only \
                 its owner may): lower its autovacuum thresholds, or run errand as the owner"
            );
        }
        return Ok(false);
    }
    // VACUUM runs outside a transaction: the simple query protocol, one statement.
    let vacuum = format!("VACUUM (SKIP_LOCKED) {table}");
    s.inner.pool.execute(vacuum.as_str()).await.map_err(db)?;
    tracing::debug!(table, dead, "vacuumed the jobs table");
    Ok(true)
}
