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
    let gone: Vec<(i64, Option<String>)> =
        sqlx::query_as(&format!("{} RETURNING id, workflow_id", prune_sql()))
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
        .filter(|(_, w)| w.is_some())
        .map(|(id, _)| *id)
        .collect();
    if !steps.is_empty() {
        let ids = crate::sql::to_json(&steps);
        let mut workflows: Vec<&str> = gone.iter().filter_map(|(_, w)| w.as_deref()).collect();
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
    Ok(gone.len() as u64)
}
