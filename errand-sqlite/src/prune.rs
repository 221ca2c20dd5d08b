//! Pruning: final jobs older than the retention, deleted in bounded batches.

use chrono::{DateTime, Utc};
use errand_core::{JobState, StoreError};

use crate::error::db;
use crate::row::micros;
use crate::sql::FINAL;
use crate::store::SqliteStore;

/// Deletes up to `?3` jobs in final state `?1` finalized before `?2`, oldest first (the
/// final-states predicate repeated so the index on them serves).
pub(crate) fn prune_sql() -> String {
    format!(
        "DELETE FROM errand_jobs WHERE id IN (SELECT id FROM errand_jobs \
         WHERE {FINAL} AND state = ? AND finalized_at < ? ORDER BY finalized_at LIMIT ?)"
    )
}

pub(crate) async fn prune(
    s: &SqliteStore,
    state: JobState,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<u64, StoreError> {
    let w = s.writer().await?;
    let mut tx = w.begin().await?;
    let gone: Vec<(i64, Option<String>, i64)> = sqlx::query_as(&format!(
        "{} RETURNING id, workflow_id, has_dependents",
        prune_sql()
    ))
    .bind(state.as_str())
    .bind(micros(before))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    // With the workflow steps among them, their dependency edges, and the workflows they
    // leave empty.
    let steps: Vec<i64> = gone
        .iter()
        .filter(|(_, w, _)| w.is_some())
        .map(|(id, _, _)| *id)
        .collect();
    // A failed step's edges to the steps it cancelled are not settled: they stop counting
    // (as a deleted step's do), and a dependent retried by hand meanwhile, waiting for it
    // again, is released rather than left waiting for a job that no longer exists.
    let failed: Vec<i64> = gone
        .iter()
        .filter(|(_, _, d)| *d == 1)
        .map(|(id, _, _)| *id)
        .collect();
    let mut released = false;
    if !failed.is_empty() {
        released = sqlx::query(&crate::cancel_retry::uncount_sql(
            "SELECT child_id AS id, count(*) AS k FROM errand_job_deps \
             WHERE parent_id IN (SELECT value FROM json_each(?1)) AND settled = 0 \
             GROUP BY child_id",
        ))
        .bind(crate::sql::to_json(&failed))
        .bind(micros(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            > 0;
    }
    if !steps.is_empty() {
        let ids = crate::sql::to_json(&steps);
        let mut workflows: Vec<&str> = gone.iter().filter_map(|(_, w, _)| w.as_deref()).collect();
        workflows.sort_unstable();
        workflows.dedup();
        for sql in [
            "DELETE FROM errand_job_deps WHERE parent_id IN (SELECT value FROM json_each(?1))",
            "DELETE FROM errand_job_deps WHERE child_id IN (SELECT value FROM json_each(?1))",
        ] {
            sqlx::query(sql)
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query(
            "DELETE FROM errand_workflows WHERE id IN (SELECT value FROM json_each(?1)) \
             AND NOT EXISTS (SELECT 1 FROM errand_jobs j WHERE j.workflow_id = errand_workflows.id)",
        )
        .bind(crate::sql::to_json(&workflows))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    drop(w);
    if released {
        s.settled_wake();
    }
    Ok(gone.len() as u64)
}
