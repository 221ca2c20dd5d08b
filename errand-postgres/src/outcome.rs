//! Recording outcomes: a batch of any outcomes in one statement, each row fenced by the
//! attempt that ran, notifying the queues it makes available (a batch of completions only,
//! the usual one, by a leaner statement).

use std::collections::BTreeSet;

use errand_core::{Finish, FinishEffect, JobId, JobState, LeaseRef, Progress, StoreError};
use sqlx::Row;

use crate::error::db;
use crate::sql::to_json;
use crate::store::PgStore;

pub(crate) async fn finish(s: &PgStore, batch: &[Finish]) -> Result<Vec<JobId>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    // In id order: the order the plain statement's rows are usually locked in.
    let mut batch: Vec<&Finish> = batch.iter().collect();
    batch.sort_unstable_by_key(|f| f.lease.id);
    let effects: Vec<_> = batch.iter().map(|f| f.effect()).collect();
    let steps = s
        .inner
        .steps_claimed
        .load(std::sync::atomic::Ordering::Relaxed);
    // The plain statements lock rows in their plan's order, so they run only while no lease
    // extension or release of this process does (`Inner::running_rows`). While one does (or
    // waits to), the batch takes the statement that locks in id order instead of waiting:
    // an extension held up by a row another transaction keeps locked never holds up the
    // outcomes of other jobs.
    let plain = if steps {
        None
    } else {
        s.inner.running_rows.try_read().ok()
    };
    if plain.is_some() && effects.iter().all(|e| e.state == JobState::Completed) {
        return complete(s, &batch, &effects).await;
    }
    let sql = if plain.is_some() {
        &s.inner.sql.finish_lean
    } else {
        &s.inner.sql.finish
    };
    let mut conn = s.held().await?;
    let rows = sqlx::query(sql)
        // Planned for each call's arrays: see `Sql::finish`.
        .persistent(false)
        .bind(batch.iter().map(|f| f.lease.id).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.lease.attempt).collect::<Vec<_>>())
        .bind(effects.iter().map(|e| e.state.as_str()).collect::<Vec<_>>())
        .bind(effects.iter().map(|e| e.attempt_delta).collect::<Vec<_>>())
        .bind(effects.iter().map(|e| e.run_at).collect::<Vec<_>>())
        .bind(effects.iter().map(|e| e.finalized_at).collect::<Vec<_>>())
        .bind(
            effects
                .iter()
                .map(|e| e.error.map(to_json))
                .collect::<Vec<_>>(),
        )
        .bind(&s.inner.channel)
        .bind(effects.iter().map(|e| e.result).collect::<Vec<_>>())
        .fetch_all(conn.conn())
        .await
        .map_err(db)?;
    conn.back();
    let mut applied = Vec::with_capacity(rows.len());
    let mut woken = BTreeSet::new();
    let mut scheduled = false;
    let mut ended = false;
    let mut settled = false;
    for (i, r) in rows.iter().enumerate() {
        applied.push(r.get::<i64, _>(0));
        // A workflow step's failure settled its dependents (migration 13's trigger), which
        // may have made some due: its NOTIFYs reach listening processes; wake this one's.
        settled |= r.get::<bool, _>(4);
        if i == 0 {
            // The steps this batch's completions released, woken precisely (their NOTIFYs
            // went out in the statement).
            if let Some(queues) = r.get::<Option<Vec<String>>, _>(5) {
                woken.extend(queues);
            }
            scheduled |= r.get::<bool, _>(6);
        }
        match r.get::<&str, _>(2) {
            "completed" | "discarded" | "cancelled" => ended = true,
            "available" => {
                if let Some(q) = r.get::<Option<String>, _>(1) {
                    woken.insert(q);
                }
            }
            "scheduled" | "retryable" => scheduled = true,
            _ => {}
        }
    }
    for q in &woken {
        s.inner.signals.notify(q);
    }
    if scheduled {
        s.inner.signals.notify_scheduled();
    }
    if ended {
        s.inner.signals.notify_ended();
    }
    if settled {
        s.settled_wake();
    }
    Ok(applied)
}

/// A batch of completions by a process that has claimed no workflow step
/// (`Sql::finish_completions`), while no lease extension or release of it runs.
async fn complete(
    s: &PgStore,
    batch: &[&Finish],
    effects: &[FinishEffect<'_>],
) -> Result<Vec<JobId>, StoreError> {
    let mut conn = s.held().await?;
    let (applied, settled, _): (Vec<JobId>, bool, i64) =
        sqlx::query_as(&s.inner.sql.finish_completions)
            // Planned for each call's arrays: see `Sql::finish`.
            .persistent(false)
            .bind(batch.iter().map(|f| f.lease.id).collect::<Vec<_>>())
            .bind(batch.iter().map(|f| f.lease.attempt).collect::<Vec<_>>())
            .bind(effects.iter().map(|e| e.finalized_at).collect::<Vec<_>>())
            .bind(effects.iter().map(|e| e.result).collect::<Vec<_>>())
            .bind(&s.inner.channel)
            .fetch_one(conn.conn())
            .await
            .map_err(db)?;
    conn.back();
    if !applied.is_empty() {
        s.inner.signals.notify_ended();
    }
    if settled {
        s.settled_wake();
    }
    Ok(applied)
}

/// Stores a running attempt's progress report.
pub(crate) async fn set_progress(
    s: &PgStore,
    lease: LeaseRef,
    progress: &Progress,
) -> Result<bool, StoreError> {
    let res = sqlx::query(&s.inner.sql.set_progress)
        .bind(to_json(progress))
        .bind(lease.id)
        .bind(lease.attempt)
        .execute(&s.inner.pool)
        .await
        .map_err(db)?;
    Ok(res.rows_affected() == 1)
}

/// Marks job `id` so that recording its end notifies every process.
pub(crate) async fn watch_end(s: &PgStore, id: JobId) -> Result<(), StoreError> {
    sqlx::query(&s.inner.sql.watch_end)
        .bind(id)
        .execute(&s.inner.pool)
        .await
        .map_err(db)?;
    Ok(())
}
