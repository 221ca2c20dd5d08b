//! Scheduling: scheduled and retryable jobs that are due become available.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use errand_core::{PromoteReport, StoreError};

use crate::error::db;
use crate::row::micros;
use crate::sql::DUE;
use crate::store::SqliteStore;

/// Moves up to `?2` scheduled and retryable jobs due at `?1` to `available`.
pub(crate) fn promote_sql() -> String {
    format!(
        "UPDATE errand_jobs SET state = 'available' WHERE id IN \
         (SELECT id FROM errand_jobs WHERE {DUE} AND run_at <= ? \
          ORDER BY run_at LIMIT ?) RETURNING queue"
    )
}

pub(crate) async fn promote_due(
    s: &SqliteStore,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<PromoteReport, StoreError> {
    let w = s.writer().await?;
    let rows: Vec<(String,)> = sqlx::query_as(&promote_sql())
        .bind(micros(now))
        .bind(limit)
        .fetch_all(w.pool())
        .await
        .map_err(db)?;
    let queues: BTreeSet<String> = rows.iter().map(|(q,)| q.clone()).collect();
    for q in &queues {
        s.signals.notify(q);
    }
    let next_due = if rows.len() == limit as usize {
        Some(now)
    } else {
        let (next,): (Option<i64>,) =
            sqlx::query_as(&format!("SELECT min(run_at) FROM errand_jobs WHERE {DUE}"))
                .fetch_one(w.pool())
                .await
                .map_err(db)?;
        next.and_then(DateTime::from_timestamp_micros)
    };
    Ok(PromoteReport {
        promoted: rows.len() as u64,
        queues: queues.into_iter().collect(),
        next_due,
    })
}
