//! Recording outcomes: completions in one statement per 1,024 leases, the other outcomes
//! one row each, all fenced by the attempt that ran.

use std::collections::BTreeSet;

use errand_core::{Finish, JobId, JobState, LeaseRef, Progress, StoreError};
use sqlx::sqlite::SqliteArguments;
use sqlx::Arguments;

use crate::direct::{lite, prepare};
use crate::error::db;
use crate::row::micros;
use crate::sql::{leases_json, to_json};
use crate::store::{SqliteStore, Writer};

pub(crate) async fn finish(s: &SqliteStore, batch: &[Finish]) -> Result<Vec<JobId>, StoreError> {
    let w = s.writer().await?;
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    // Completions, the common case, in one statement; other outcomes one row each.
    let (completes, others): (Vec<&Finish>, Vec<&Finish>) = batch
        .iter()
        .partition(|f| matches!(f.action, errand_core::FinishAction::Complete));
    if others.is_empty() {
        let applied = complete_only(&w, &completes).await?;
        s.signals.notify_ended();
        return Ok(applied);
    }
    let mut applied = Vec::with_capacity(batch.len());
    let mut woken = BTreeSet::new();
    let mut scheduled = false;
    let mut ended = !completes.is_empty();
    let mut tx = w.begin().await?;
    if !completes.is_empty() {
        let (at, leases) = completion_batch(&completes);
        // Usually every outcome applies, and the count says so without a row per job.
        let (changed, _) = complete_leases(&mut tx, &leases, at, false)
            .await
            .map_err(db)?;
        if changed as usize == leases.len() {
            applied.extend(leases.iter().map(|l| l.id));
        } else {
            // Some are stale (cancelled or rescued meanwhile): undo, and ask which apply.
            tx.rollback().await.map_err(db)?;
            tx = w.begin().await?;
            let (_, done) = complete_leases(&mut tx, &leases, at, true)
                .await
                .map_err(db)?;
            applied.extend(done);
        }
    }
    for f in others {
        let effect = f.effect();
        let error = effect.error.map(to_json);
        let queue: Option<String> = sqlx::query_scalar(
            "UPDATE errand_jobs SET state = ?, lease_expires_at = NULL, \
             attempt = attempt + ?, run_at = coalesce(?, run_at), finalized_at = ?, \
             errors = CASE WHEN ? IS NULL THEN errors ELSE json_insert(errors, '$[#]', json(?)) END, \
             result = coalesce(?, result) \
             WHERE id = ? AND state = 'running' AND attempt = ? RETURNING queue",
        )
        .bind(effect.state.as_str())
        .bind(effect.attempt_delta)
        .bind(effect.run_at.map(micros))
        .bind(effect.finalized_at.map(micros))
        .bind(&error)
        .bind(&error)
        .bind(effect.result)
        .bind(f.lease.id)
        .bind(f.lease.attempt)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .into_iter()
        .next();
        if let Some(queue) = queue {
            applied.push(f.lease.id);
            ended |= effect.state.is_final();
            match effect.state {
                JobState::Available => {
                    woken.insert(queue);
                }
                JobState::Scheduled | JobState::Retryable => scheduled = true,
                _ => {}
            }
        }
    }
    tx.commit().await.map_err(db)?;
    for q in &woken {
        s.signals.notify(q);
    }
    if scheduled {
        s.signals.notify_scheduled();
    }
    if ended {
        s.signals.notify_ended();
    }
    Ok(applied)
}

/// Stores a running attempt's progress report.
pub(crate) async fn set_progress(
    s: &SqliteStore,
    lease: LeaseRef,
    progress: &Progress,
) -> Result<bool, StoreError> {
    let w = s.writer().await?;
    let res = sqlx::query(
        "UPDATE errand_jobs SET progress = ? WHERE id = ? AND state = 'running' AND attempt = ?",
    )
    .bind(to_json(progress))
    .bind(lease.id)
    .bind(lease.attempt)
    .execute(w.pool())
    .await
    .map_err(db)?;
    Ok(res.rows_affected() == 1)
}

/// Leases bound per completion statement: two parameters each, well under SQLite's limit
/// of 32,766. A power of two (see [`complete_leases`]).
const LEASES_PER_STATEMENT: usize = 1024;

/// Completes the jobs of `leases` (fenced by attempt) at `at`; returns how many changed and,
/// when `returning`, which.
///
/// The leases are bound as a `VALUES` list, half the cost per row of unpacking JSON. Each
/// chunk is padded with `(0, 0)` (no job has id 0) to a power of two, so the eleven
/// statement texts stay prepared in the connection's cache: preparing a list of hundreds
/// of rows cost as much as running it. The list is the outer side of an `UPDATE … FROM`,
/// so each lease is one lookup by id: a `(id, attempt) IN (…)` filter instead made SQLite
/// walk every running job's entry in the lease index, for each batch.
async fn complete_leases(
    tx: &mut sqlx::SqliteConnection,
    leases: &[LeaseRef],
    at: i64,
    returning: bool,
) -> Result<(u64, Vec<i64>), sqlx::Error> {
    let (mut changed, mut ids) = (0, Vec::new());
    for chunk in leases.chunks(LEASES_PER_STATEMENT) {
        let slots = chunk.len().next_power_of_two();
        let mut sql = complete_sql(slots);
        let mut args = SqliteArguments::default();
        args.add(at).expect("bind");
        for l in chunk {
            args.add(l.id).expect("bind");
            args.add(l.attempt).expect("bind");
        }
        for _ in chunk.len()..slots {
            args.add(0_i64).expect("bind");
            args.add(0_i32).expect("bind");
        }
        if returning {
            sql.push_str(" RETURNING id");
            let rows: Vec<(i64,)> = sqlx::query_as_with(&sql, args).fetch_all(&mut *tx).await?;
            changed += rows.len() as u64;
            ids.extend(rows.into_iter().map(|(id,)| id));
        } else {
            let res = sqlx::query_with(&sql, args).execute(&mut *tx).await?;
            changed += res.rows_affected();
        }
    }
    Ok((changed, ids))
}

/// A non-empty batch of completions as one finalization time (µs) and its leases. The time
/// is the latest of the batch, at most a few ms after the others: a per-row time would make
/// SQLite join each row back to the input.
fn completion_batch(completes: &[&Finish]) -> (i64, Vec<LeaseRef>) {
    let at = completes.iter().map(|f| f.at).max().expect("non-empty");
    (micros(at), completes.iter().map(|f| f.lease).collect())
}

/// The jobs of `leases` now completed at `finalized_at` under their lease's attempt.
/// `CROSS JOIN` keeps the leases the outer loop: one lookup by id each (SQLite otherwise
/// scanned every lease for each job of a state).
pub(crate) const COMPLETED_BY_LEASE: &str = "SELECT id FROM \
     (SELECT value ->> 0 AS lease_id, value ->> 1 AS lease_attempt FROM json_each(?)) AS u \
     CROSS JOIN errand_jobs WHERE id = u.lease_id AND attempt = u.lease_attempt AND state = 'completed' \
     AND finalized_at = ?";

/// The completion statement of each power-of-two size up to [`LEASES_PER_STATEMENT`].
static COMPLETE_SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (0..=LEASES_PER_STATEMENT.ilog2())
        .map(|p| complete_sql(1 << p))
        .collect()
});

/// A batch of completions alone (the common one), on the store's own connection (see
/// `direct`): each statement commits by itself, the whole batch one call to that thread.
async fn complete_only(w: &Writer<'_>, completes: &[&Finish]) -> Result<Vec<JobId>, StoreError> {
    let (at, leases) = completion_batch(completes);
    w.run(leases.len(), move |c| {
        // Usually every outcome applies, and the count says so without a row per job.
        let mut changed = 0;
        for chunk in leases.chunks(LEASES_PER_STATEMENT) {
            let slots = chunk.len().next_power_of_two();
            let mut stmt = prepare(c, &COMPLETE_SQL[slots.ilog2() as usize])?;
            stmt.raw_bind_parameter(1, at).map_err(lite)?;
            for i in 0..slots {
                let (id, attempt) = chunk.get(i).map_or((0, 0), |l| (l.id, l.attempt));
                stmt.raw_bind_parameter(2 + 2 * i, id).map_err(lite)?;
                stmt.raw_bind_parameter(3 + 2 * i, attempt).map_err(lite)?;
            }
            changed += stmt.raw_execute().map_err(lite)?;
        }
        if changed == leases.len() {
            return Ok(leases.iter().map(|l| l.id).collect());
        }
        // Some were stale (cancelled or rescued meanwhile); the others are written. Those
        // are the jobs now completed at this batch's time under their lease's attempt: no
        // other writer leaves that pair (a later run has a higher attempt, and a job that
        // completed in its own transaction records no outcome). A batch retried after a
        // failure between two statements finds its first part this way too.
        let mut stmt = prepare(c, COMPLETED_BY_LEASE)?;
        let ids = stmt
            .query_map(rusqlite::params![leases_json(&leases), at], |r| r.get(0))
            .map_err(lite)?;
        ids.collect::<Result<_, _>>().map_err(lite)
    })
    .await
}

/// Completes `n` leases bound as `finalized_at, id1, attempt1, id2, attempt2, …`.
pub(crate) fn complete_sql(n: usize) -> String {
    let mut sql = String::from(
        "UPDATE errand_jobs SET state = 'completed', lease_expires_at = NULL, finalized_at = ? \
         FROM (VALUES ",
    );
    for i in 0..n {
        sql.push_str(if i == 0 { "(?, ?)" } else { ", (?, ?)" });
    }
    sql.push_str(") AS u WHERE id = u.column1 AND attempt = u.column2 AND state = 'running'");
    sql
}
