//! Leases: extending the running jobs' leases, releasing them unstarted at shutdown, and
//! rescuing the jobs of leases that ran out (their worker died).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use errand_core::{
    rescue_message, ErrorRecord, JobId, JobState, LeaseRef, RescueReport, StoreError,
};

use crate::error::db;
use crate::row::micros;
use crate::sql::{leases_json, to_json, LEASE_MATCH};
use crate::store::SqliteStore;

pub(crate) async fn extend(
    s: &SqliteStore,
    leases: &[LeaseRef],
    until: DateTime<Utc>,
) -> Result<Vec<JobId>, StoreError> {
    let w = s.writer().await?;
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("UPDATE errand_jobs SET lease_expires_at = ? {LEASE_MATCH} RETURNING id");
    let rows: Vec<(i64,)> = sqlx::query_as(&sql)
        .bind(micros(until))
        .bind(leases_json(leases))
        .fetch_all(w.pool())
        .await
        .map_err(db)?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

pub(crate) async fn release(
    s: &SqliteStore,
    leases: &[LeaseRef],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let w = s.writer().await?;
    if leases.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "UPDATE errand_jobs SET state = 'available', attempt = attempt - 1, \
         lease_expires_at = NULL, run_at = min(run_at, ?) {LEASE_MATCH} RETURNING queue"
    );
    let rows: Vec<(String,)> = sqlx::query_as(&sql)
        .bind(micros(now))
        .bind(leases_json(leases))
        .fetch_all(w.pool())
        .await
        .map_err(db)?;
    let queues: BTreeSet<&str> = rows.iter().map(|(q,)| q.as_str()).collect();
    for q in queues {
        s.signals.notify(q);
    }
    Ok(rows.len() as u64)
}

pub(crate) async fn rescue_expired(
    s: &SqliteStore,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<RescueReport, StoreError> {
    let w = s.writer().await?;
    let mut tx = w.begin().await?;
    let expired: Vec<(i64, i32, i32, Option<String>)> = sqlx::query_as(
        "SELECT id, attempt, max_attempts, attempted_by FROM errand_jobs \
         WHERE state = 'running' AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?",
    )
    .bind(micros(now))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let mut report = RescueReport::default();
    for (id, attempt, max_attempts, worker) in expired {
        let exhausted = attempt >= max_attempts;
        let error = ErrorRecord::new(attempt, now, rescue_message(worker.as_deref()));
        let state = if exhausted {
            report.discarded += 1;
            JobState::Discarded
        } else {
            report.retried += 1;
            JobState::Retryable
        };
        sqlx::query(
            // `has_dependents` named: a discarded workflow step settles its dependents
            // (migration 12's triggers).
            "UPDATE errand_jobs SET state = ?, lease_expires_at = NULL, run_at = ?, \
             finalized_at = ?, errors = json_insert(errors, '$[#]', json(?)), \
             has_dependents = has_dependents \
             WHERE id = ? AND state = 'running' AND attempt = ?",
        )
        .bind(state.as_str())
        .bind(micros(now))
        .bind(exhausted.then_some(micros(now)))
        .bind(to_json(&error))
        .bind(id)
        .bind(attempt)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    if report.discarded > 0 {
        s.signals.notify_ended();
        s.settled_wake();
    }
    Ok(report)
}
