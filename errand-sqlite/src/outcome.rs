//! Recording outcomes: completions in one statement per 1,024 leases, the other outcomes
//! one row each, all fenced by the attempt that ran.

use std::collections::BTreeSet;

use crate::direct::{lite, prepare};
use crate::error::db;
use crate::row::micros;
use crate::sql::{leases_json, to_json};
use crate::store::SqliteStore;
use errand_core::{Finish, JobId, JobState, LeaseRef, Progress, StoreError};

/// One outcome other than a completion, owned, as the store's connection writes it.
struct Other {
    state: JobState,
    attempt_delta: i32,
    run_at: Option<i64>,
    finalized_at: Option<i64>,
    error: Option<String>,
    result: Option<String>,
    lease: LeaseRef,
}

pub(crate) async fn finish(s: &SqliteStore, batch: &[Finish]) -> Result<Vec<JobId>, StoreError> {
    let w = s.writer().await?;
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    // Completions, the common case, in one statement; other outcomes one row each.
    let (completes, others): (Vec<&Finish>, Vec<&Finish>) = batch
        .iter()
        .partition(|f| matches!(f.action, errand_core::FinishAction::Complete));
    let completed = (!completes.is_empty()).then(|| completion_batch(&completes));
    let others: Vec<Other> = others
        .iter()
        .map(|f| {
            let e = f.effect();
            Other {
                state: e.state,
                attempt_delta: e.attempt_delta,
                run_at: e.run_at.map(micros),
                finalized_at: e.finalized_at.map(micros),
                error: e.error.map(to_json),
                result: e.result.map(str::to_owned),
                lease: f.lease,
            }
        })
        .collect();
    let ended = completed.is_some();
    let settling = s.workflows_seen.load(std::sync::atomic::Ordering::Relaxed);
    // On the store's own connection (see `direct`): a batch of completions alone commits
    // statement by statement; with other outcomes, all in one transaction.
    let (applied, written, settled) = w
        .run(batch.len(), move |c| {
            // A failure before `COMMIT` is rolled back by `direct` (the call leaves no
            // transaction open).
            // Settling completions in the batch's own statements must be atomic with them.
            let in_tx = !others.is_empty() || (settling && completed.is_some());
            if in_tx {
                c.execute_batch("BEGIN IMMEDIATE").map_err(lite)?;
            }
            let mut released = Vec::new();
            let mut applied = match &completed {
                Some((at, leases)) if settling => complete_settling(c, leases, *at, &mut released)?,
                Some((at, leases)) => complete(c, leases, *at)?,
                None => Vec::new(),
            };
            // The other outcomes may fire the settling triggers (a failure of a step with
            // dependents): more rows changed than the outcomes themselves says they did.
            let changes_before = c.total_changes();
            let mut written = Vec::with_capacity(others.len());
            for o in &others {
                let mut stmt = prepare(
                    c,
                    "UPDATE errand_jobs SET state = ?1, lease_expires_at = NULL, \
                     has_dependents = has_dependents, \
                     attempt = attempt + ?2, run_at = coalesce(?3, run_at), finalized_at = ?4, \
                     errors = CASE WHEN ?5 IS NULL THEN errors \
                                   ELSE json_insert(errors, '$[#]', json(?5)) END, \
                     result = coalesce(?6, result) \
                     WHERE id = ?7 AND state = 'running' AND attempt = ?8 RETURNING queue",
                )?;
                let queue: Option<String> = stmt
                    .query_map(
                        rusqlite::params![
                            o.state.as_str(),
                            o.attempt_delta,
                            o.run_at,
                            o.finalized_at,
                            o.error,
                            o.result,
                            o.lease.id,
                            o.lease.attempt
                        ],
                        |r| r.get(0),
                    )
                    .map_err(lite)?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(lite)?
                    .pop();
                if let Some(queue) = queue {
                    applied.push(o.lease.id);
                    written.push((o.state, queue));
                }
            }
            if in_tx {
                c.execute_batch("COMMIT").map_err(lite)?;
            }
            let settled = c.total_changes() - changes_before > written.len() as u64;
            written.extend(released);
            Ok((applied, written, settled))
        })
        .await?;
    if settled {
        s.workflows_seen
            .store(true, std::sync::atomic::Ordering::Relaxed);
        s.settled_wake();
    }
    let mut ended = ended;
    let mut scheduled = false;
    let mut woken = BTreeSet::new();
    for (state, queue) in written {
        ended |= state.is_final();
        match state {
            JobState::Available => {
                woken.insert(queue);
            }
            JobState::Scheduled | JobState::Retryable => scheduled = true,
            _ => {}
        }
    }
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
/// of 32,766. A power of two (see [`complete`]).
const LEASES_PER_STATEMENT: usize = 1024;

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

/// The completion statements that also mark jobs with dependents (`has_dependents` 1 → 2)
/// for [`complete_settling`], and so keep migration 12's row trigger from settling them one
/// by one.
static COMPLETE_SETTLING_SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (0..=LEASES_PER_STATEMENT.ilog2())
        .map(|p| {
            complete_sql(1 << p).replace(
                "finalized_at = ? FROM",
                "finalized_at = ?, has_dependents = has_dependents * 2 FROM",
            )
        })
        .collect()
});

/// Releases the dependents of the batch's jobs just completed with dependents (marked 2):
/// each loses one per such parent; one reaching 0 while pending is released at `?2`, as
/// migration 12's trigger does one parent at a time.
const SETTLE_COMPLETED: &str = "UPDATE errand_jobs AS c SET \
     waiting_on = c.waiting_on - n.k, \
     state = CASE WHEN c.state = 'pending' AND c.waiting_on = n.k \
                  THEN CASE WHEN c.run_at > ?2 THEN 'scheduled' ELSE 'available' END \
                  ELSE c.state END, \
     run_at = CASE WHEN c.state = 'pending' AND c.waiting_on = n.k AND c.run_at < ?2 \
                   THEN ?2 ELSE c.run_at END \
     FROM (SELECT d.child_id AS id, count(*) AS k FROM errand_job_deps d \
           WHERE d.settled = 0 AND d.parent_id IN \
             (SELECT p.id FROM errand_jobs p \
              WHERE p.id IN (SELECT value ->> 0 FROM json_each(?1)) AND p.has_dependents = 2) \
           GROUP BY d.child_id) AS n \
     WHERE c.id = n.id RETURNING queue, state";
const SETTLE_DONE: &str = "UPDATE errand_jobs SET has_dependents = 0 \
     WHERE id IN (SELECT value ->> 0 FROM json_each(?1)) AND has_dependents = 2";

/// [`complete`], settling the completed jobs' dependents in the same transaction with two
/// statements for the whole batch (the caller holds `BEGIN IMMEDIATE`): at 100 completions
/// per batch of parents of one step, the row trigger's two statements per job cost more
/// than the completions. A completed job's `has_dependents` ends 0, which says all its edges
/// are settled (they are not written: marking 9,998 edges of one fan-out cost more than
/// counting them), so no later end of it (after a hand retry) counts them again, and the
/// revive trigger (migration 12) reads such an edge as settled.
fn complete_settling(
    c: &rusqlite::Connection,
    leases: &[LeaseRef],
    at: i64,
    released: &mut Vec<(JobState, String)>,
) -> Result<Vec<JobId>, StoreError> {
    let applied = complete_with(c, leases, at, &COMPLETE_SETTLING_SQL)?;
    let ids = leases_json(leases);
    // The steps released (and, like every dependent, counted down): their queues are woken.
    let mut stmt = prepare(c, SETTLE_COMPLETED)?;
    let rows = stmt
        .query_map(rusqlite::params![ids, at], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(lite)?;
    for row in rows {
        let (queue, state) = row.map_err(lite)?;
        match state.as_str() {
            "available" => released.push((JobState::Available, queue)),
            "scheduled" => released.push((JobState::Scheduled, queue)),
            _ => {}
        }
    }
    drop(stmt);
    prepare(c, SETTLE_DONE)?.execute([&ids]).map_err(lite)?;
    Ok(applied)
}

/// Completes the jobs of `leases` (fenced by attempt) at `at`, one statement per 1,024;
/// returns those that applied.
///
/// The leases are bound as a `VALUES` list, half the cost per row of unpacking JSON. Each
/// chunk is padded with `(0, 0)` (no job has id 0) to a power of two, so the eleven
/// statement texts stay prepared in the connection's cache: preparing a list of hundreds
/// of rows cost as much as running it. The list is the outer side of an `UPDATE … FROM`,
/// so each lease is one lookup by id: a `(id, attempt) IN (…)` filter instead made SQLite
/// walk every running job's entry in the lease index, for each batch.
fn complete(
    c: &rusqlite::Connection,
    leases: &[LeaseRef],
    at: i64,
) -> Result<Vec<JobId>, StoreError> {
    complete_with(c, leases, at, &COMPLETE_SQL)
}

fn complete_with(
    c: &rusqlite::Connection,
    leases: &[LeaseRef],
    at: i64,
    statements: &[String],
) -> Result<Vec<JobId>, StoreError> {
    // Usually every outcome applies, and the count says so without a row per job.
    let mut changed = 0;
    for chunk in leases.chunks(LEASES_PER_STATEMENT) {
        let slots = chunk.len().next_power_of_two();
        let mut stmt = prepare(c, &statements[slots.ilog2() as usize])?;
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
    // Some were stale (cancelled or rescued meanwhile); the others are written. Those are
    // the jobs now completed at this batch's time under their lease's attempt: no other
    // writer leaves that pair (a later run has a higher attempt, and a job that completed
    // in its own transaction records no outcome). A batch retried after a failure between
    // two statements finds its first part this way too.
    let mut stmt = prepare(c, COMPLETED_BY_LEASE)?;
    let ids = stmt
        .query_map(rusqlite::params![leases_json(leases), at], |r| r.get(0))
        .map_err(lite)?;
    ids.collect::<Result<_, _>>().map_err(lite)
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
