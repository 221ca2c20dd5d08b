//! The [`Store`] contract on SQLite: one statement or one `BEGIN IMMEDIATE` transaction each.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errand_core::{
    rescue_message, state_predicates, CancelResult, ClaimRequest, ErrorRecord, Finish,
    InsertResult, JobId, JobRow, JobState, LeaseRef, ListFilter, NewJob, PromoteReport,
    QueueSignals, RescueReport, StateCount, Store, StoreError,
};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Row, Sqlite};

use crate::row::{decode, decode_claimed, micros, CLAIMED, COLUMNS};
use crate::store::{db, SqliteStore};

// State predicates exactly as the partial indexes of migration 0003 spell them (OR chains,
// see `errand_core::state_any`): SQLite uses a partial index only for a query that repeats
// its predicate, and an `IN` list in a predicate costs more per row.
pub(crate) const NON_FINAL: &str =
    "(state = 'scheduled' OR state = 'available' OR state = 'running' OR state = 'retryable')";
const FINAL: &str = "(state = 'completed' OR state = 'discarded' OR state = 'cancelled')";
const DUE: &str = "(state = 'scheduled' OR state = 'retryable')";

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("errand types serialize to JSON")
}

/// `[[id, attempt], …]`, read back in SQL with `json_each`.
fn leases_json(leases: &[LeaseRef]) -> String {
    let pairs: Vec<[i64; 2]> = leases
        .iter()
        .map(|l| [l.id, i64::from(l.attempt)])
        .collect();
    to_json(&pairs)
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
const COMPLETED_BY_LEASE: &str = "SELECT id FROM \
     (SELECT value ->> 0 AS lease_id, value ->> 1 AS lease_attempt FROM json_each(?)) AS u \
     CROSS JOIN errand_jobs WHERE id = u.lease_id AND attempt = u.lease_attempt AND state = 'completed' \
     AND finalized_at = ?";

/// A batch of completions alone (the common one): each statement commits by itself. The
/// transaction the other outcomes need costs two more round trips to the connection's
/// thread (`BEGIN`, `COMMIT`): ~1 ms per batch, several per cent of a no-op job's cost.
async fn complete_only(
    pool: &sqlx::SqlitePool,
    completes: &[&Finish],
) -> Result<Vec<JobId>, sqlx::Error> {
    let (at, leases) = completion_batch(completes);
    let mut conn = pool.acquire().await?;
    // Usually every outcome applies, and the count says so without a row per job.
    let (changed, _) = complete_leases(&mut conn, &leases, at, false).await?;
    if changed as usize == leases.len() {
        return Ok(leases.iter().map(|l| l.id).collect());
    }
    // Some were stale (cancelled or rescued meanwhile); the others are written. Those are
    // the jobs now completed at this batch's time under their lease's attempt: no other
    // writer leaves that pair (a later run has a higher attempt, and a job that completed
    // in its own transaction records no outcome). A batch retried after a failure between
    // two statements finds its first part this way too.
    let rows: Vec<(i64,)> = sqlx::query_as(COMPLETED_BY_LEASE)
        .bind(leases_json(&leases))
        .bind(at)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Completes `n` leases bound as `finalized_at, id1, attempt1, id2, attempt2, …`.
fn complete_sql(n: usize) -> String {
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

/// Jobs per batch insert statement: eleven parameters each, well under SQLite's limit.
const INSERT_ROWS_PER_STATEMENT: usize = 512;

/// Inserts `n` jobs, each bound as `kind, queue, args, state, priority, max_attempts, run_at,
/// created_at, tags, backoff, timeout_ms`, in order; returns their ids.
fn insert_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO errand_jobs (kind, queue, args, state, priority, max_attempts, run_at, \
         created_at, tags, backoff, timeout_ms) VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    sql.push_str(" RETURNING id");
    sql
}

/// Moves up to `?2` scheduled and retryable jobs due at `?1` to `available`.
fn promote_sql() -> String {
    format!(
        "UPDATE errand_jobs SET state = 'available' WHERE id IN \
         (SELECT id FROM errand_jobs WHERE {DUE} AND run_at <= ? \
          ORDER BY run_at LIMIT ?) RETURNING queue"
    )
}

/// Deletes up to `?2` final jobs finalized before `?1`, oldest first.
fn prune_sql() -> String {
    format!(
        "DELETE FROM errand_jobs WHERE id IN (SELECT id FROM errand_jobs \
         WHERE {FINAL} AND finalized_at < ? ORDER BY finalized_at LIMIT ?)"
    )
}

/// The running jobs of the leases bound as `[[id, attempt], …]` ([`leases_json`]), for an
/// `UPDATE errand_jobs SET … {LEASE_MATCH}`: a lookup by id per lease (see
/// [`complete_leases`]).
const LEASE_MATCH: &str = "FROM (SELECT value ->> 0 AS lease_id, value ->> 1 AS lease_attempt \
     FROM json_each(?)) AS u \
     WHERE id = u.lease_id AND attempt = u.lease_attempt AND state = 'running'";

/// `WHERE` clauses for a list filter: one per state index group the filter touches (so
/// each can use its group's partial index; see [`state_predicates`]), or a single one
/// without a state predicate. Each use of a clause binds its arguments with [`bind_filter`].
fn where_clauses(f: &ListFilter) -> Vec<String> {
    let mut rest = String::new();
    if f.queue.is_some() {
        rest.push_str(" AND queue = ?");
    }
    if f.kind.is_some() {
        rest.push_str(" AND kind = ?");
    }
    let preds = state_predicates(&f.states);
    if preds.is_empty() {
        return vec![format!(" WHERE 1 = 1{rest}")];
    }
    preds
        .into_iter()
        .map(|p| format!(" WHERE {p}{rest}"))
        .collect()
}

/// The arguments of one [`where_clauses`] clause, in order.
fn bind_filter(args: &mut SqliteArguments<'static>, f: &ListFilter) {
    if let Some(q) = &f.queue {
        args.add(q.clone()).expect("bind");
    }
    if let Some(k) = &f.kind {
        args.add(k.clone()).expect("bind");
    }
}

impl SqliteStore {
    /// Jobs without unique keys: one transaction of multi-row `INSERT … VALUES` statements
    /// (chunks of 512, then powers of two, so every statement text stays prepared), each
    /// returning its ids; a single job is one plain `INSERT`.
    async fn insert_plain(
        &self,
        jobs: &[NewJob],
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        if let [j] = jobs {
            // The single-enqueue hot path: plain VALUES, no JSON round trip.
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO errand_jobs (kind, queue, args, state, priority, max_attempts, \
                 run_at, created_at, tags, backoff, timeout_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(&j.kind)
            .bind(&j.queue)
            .bind(&j.args)
            .bind(j.state_at(now).as_str())
            .bind(j.priority)
            .bind(j.max_attempts)
            .bind(micros(j.run_at))
            .bind(micros(now))
            .bind(to_json(&j.tags))
            .bind(j.backoff.as_ref().map(to_json))
            .bind(j.timeout_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
            match j.state_at(now) {
                JobState::Available => self.signals.notify(&j.queue),
                _ => self.signals.notify_scheduled(),
            }
            return Ok(vec![InsertResult { id, inserted: true }]);
        }
        // Chunks of power-of-two sizes (512, 256, … 1), so each statement text stays
        // prepared, in one transaction: the batch is atomic.
        let mut ids: Vec<i64> = Vec::with_capacity(jobs.len());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let mut rest = jobs;
        while !rest.is_empty() {
            let n = if rest.len() >= INSERT_ROWS_PER_STATEMENT {
                INSERT_ROWS_PER_STATEMENT
            } else {
                1 << rest.len().ilog2()
            };
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut args = SqliteArguments::default();
            for j in chunk {
                args.add(j.kind.as_str()).expect("bind");
                args.add(j.queue.as_str()).expect("bind");
                args.add(j.args.as_str()).expect("bind");
                args.add(j.state_at(now).as_str()).expect("bind");
                args.add(j.priority).expect("bind");
                args.add(j.max_attempts).expect("bind");
                args.add(micros(j.run_at)).expect("bind");
                args.add(micros(now)).expect("bind");
                args.add(to_json(&j.tags)).expect("bind");
                args.add(j.backoff.as_ref().map(to_json)).expect("bind");
                args.add(j.timeout_ms).expect("bind");
            }
            let rows: Vec<(i64,)> = sqlx::query_as_with(&insert_sql(n), args)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            ids.extend(rows.into_iter().map(|(id,)| id));
        }
        tx.commit().await.map_err(db)?;
        // AUTOINCREMENT ids follow insertion order, which follows the input.
        ids.sort_unstable();
        let mut woken = BTreeSet::new();
        for j in jobs
            .iter()
            .filter(|j| j.state_at(now) == JobState::Available)
        {
            woken.insert(j.queue.as_str());
        }
        for q in woken {
            self.signals.notify(q);
        }
        if jobs.iter().any(|j| j.state_at(now) == JobState::Scheduled) {
            self.signals.notify_scheduled();
        }
        Ok(ids
            .into_iter()
            .map(|id| InsertResult { id, inserted: true })
            .collect())
    }

    /// Discards a claimed job whose row cannot be read, recording why (see
    /// [`JobRow::corrupt`]): it never reaches a worker, and the rest of its claim runs. The
    /// history is appended to when it is a JSON array, started afresh when the history
    /// itself is what is unreadable (the problem quotes what it held).
    async fn quarantine(&self, job: &JobRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(error) = job.unreadable_error(now) else {
            return Ok(());
        };
        tracing::error!(job_id = job.id, error = %error.message, "claimed job cannot be read: discarding it");
        let error = to_json(&error);
        let _turn = self.write_turn().await?;
        sqlx::query(
            "UPDATE errand_jobs SET state = 'discarded', finalized_at = ?, lease_expires_at = NULL, \
             errors = CASE WHEN json_valid(errors) AND json_type(errors) = 'array' \
                           THEN json_insert(errors, '$[#]', json(?)) ELSE json_array(json(?)) END \
             WHERE id = ? AND state = 'running' AND attempt = ?",
        )
        .bind(micros(now))
        .bind(&error)
        .bind(&error)
        .bind(job.id)
        .bind(job.attempt)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn fetch(&self, id: JobId) -> Result<Option<JobRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM errand_jobs WHERE id = ?");
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(decode)
            .transpose()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(
        &self,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        let _turn = self.write_turn().await?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        if jobs.iter().all(|j| j.unique_key.is_none()) {
            return self.insert_plain(&jobs, now).await;
        }
        let mut out = Vec::with_capacity(jobs.len());
        let mut woken = BTreeSet::new();
        let mut scheduled = false;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        for job in &jobs {
            let result = crate::tx::insert_keyed(&mut tx, job, now).await?;
            if result.inserted {
                match job.state_at(now) {
                    JobState::Available => {
                        woken.insert(job.queue.as_str());
                    }
                    _ => scheduled = true,
                }
            }
            out.push(result);
        }
        tx.commit().await.map_err(db)?;
        for q in woken {
            self.signals.notify(q);
        }
        if scheduled {
            self.signals.notify_scheduled();
        }
        Ok(out)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError> {
        let turn = self.write_turn().await?;
        let lease_until = errand_core::later(req.now, req.lease);
        // One statement: SQLite takes the write lock for it, so claims never overlap.
        let sql = format!(
            "UPDATE errand_jobs SET state = 'running', attempt = attempt + 1, attempted_at = ?, \
             attempted_by = ?, lease_expires_at = ? \
             WHERE id IN (SELECT id FROM errand_jobs WHERE state = 'available' AND queue = ? \
                          ORDER BY priority, run_at, id LIMIT ?) \
             RETURNING {CLAIMED}"
        );
        let rows: Vec<(String,)> = sqlx::query_as(&sql)
            .bind(micros(req.now))
            .bind(&req.worker_id)
            .bind(micros(lease_until))
            .bind(&req.queue)
            .bind(req.limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        // Decoding needs no turn: let the completer write meanwhile.
        drop(turn);
        let (mut jobs, unreadable): (Vec<_>, Vec<_>) = rows
            .iter()
            .map(|(text,)| decode_claimed(text, req, lease_until))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .partition(|j| j.corrupt.is_none());
        for job in unreadable {
            // On failure the job's lease runs out and the rescuer retries it; it is met
            // again at its next claim. The readable jobs are returned either way.
            if let Err(e) = self.quarantine(&job, req.now).await {
                tracing::warn!(job_id = job.id, error = %e, "could not discard an unreadable job");
            }
        }
        jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
        Ok(jobs)
    }

    async fn finish(&self, batch: &[Finish]) -> Result<Vec<JobId>, StoreError> {
        let _turn = self.write_turn().await?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Completions, the common case, in one statement; other outcomes one row each.
        let (completes, others): (Vec<&Finish>, Vec<&Finish>) = batch
            .iter()
            .partition(|f| matches!(f.action, errand_core::FinishAction::Complete));
        if others.is_empty() {
            return complete_only(&self.pool, &completes).await.map_err(db);
        }
        let mut applied = Vec::with_capacity(batch.len());
        let mut woken = BTreeSet::new();
        let mut scheduled = false;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
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
                tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
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
                 errors = CASE WHEN ? IS NULL THEN errors ELSE json_insert(errors, '$[#]', json(?)) END \
                 WHERE id = ? AND state = 'running' AND attempt = ? RETURNING queue",
            )
            .bind(effect.state.as_str())
            .bind(effect.attempt_delta)
            .bind(effect.run_at.map(micros))
            .bind(effect.finalized_at.map(micros))
            .bind(&error)
            .bind(&error)
            .bind(f.lease.id)
            .bind(f.lease.attempt)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if let Some(queue) = queue {
                applied.push(f.lease.id);
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
            self.signals.notify(q);
        }
        if scheduled {
            self.signals.notify_scheduled();
        }
        Ok(applied)
    }

    async fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError> {
        let _turn = self.write_turn().await?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("UPDATE errand_jobs SET lease_expires_at = ? {LEASE_MATCH} RETURNING id");
        let rows: Vec<(i64,)> = sqlx::query_as(&sql)
            .bind(micros(until))
            .bind(leases_json(leases))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn release(&self, leases: &[LeaseRef], now: DateTime<Utc>) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await?;
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
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let queues: BTreeSet<&str> = rows.iter().map(|(q,)| q.as_str()).collect();
        for q in queues {
            self.signals.notify(q);
        }
        Ok(rows.len() as u64)
    }

    async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<RescueReport, StoreError> {
        let _turn = self.write_turn().await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
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
                "UPDATE errand_jobs SET state = ?, lease_expires_at = NULL, run_at = ?, \
                 finalized_at = ?, errors = json_insert(errors, '$[#]', json(?)) \
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
        Ok(report)
    }

    async fn promote_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<PromoteReport, StoreError> {
        let _turn = self.write_turn().await?;
        let rows: Vec<(String,)> = sqlx::query_as(&promote_sql())
            .bind(micros(now))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let queues: BTreeSet<String> = rows.iter().map(|(q,)| q.clone()).collect();
        for q in &queues {
            self.signals.notify(q);
        }
        let next_due = if rows.len() == limit as usize {
            Some(now)
        } else {
            let (next,): (Option<i64>,) =
                sqlx::query_as(&format!("SELECT min(run_at) FROM errand_jobs WHERE {DUE}"))
                    .fetch_one(&self.pool)
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

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelResult, StoreError> {
        let _turn = self.write_turn().await?;
        let sql = format!(
            "UPDATE errand_jobs SET state = 'cancelled', finalized_at = ?, lease_expires_at = NULL \
             WHERE id = ? AND {NON_FINAL} RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(micros(now))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match row {
            Some(row) => Ok(CancelResult::Cancelled(decode(&row)?)),
            None => Ok(match self.fetch(id).await? {
                Some(row) => CancelResult::AlreadyFinal(row),
                None => CancelResult::NotFound,
            }),
        }
    }

    async fn retry_now(&self, id: JobId, now: DateTime<Utc>) -> Result<Option<JobRow>, StoreError> {
        let _turn = self.write_turn().await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        // A final job whose unique key was taken by a newer job stays as it is. (`state` in
        // the subquery is `o.state`: names resolve to the innermost table first.)
        let sql = format!(
            "UPDATE errand_jobs SET state = 'available', run_at = ?, finalized_at = NULL, \
             lease_expires_at = NULL, max_attempts = max(max_attempts, attempt + 1) \
             WHERE id = ? AND state != 'running' AND (unique_key IS NULL OR NOT EXISTS \
               (SELECT 1 FROM errand_jobs o WHERE o.unique_key = errand_jobs.unique_key \
                AND o.id != errand_jobs.id AND {NON_FINAL})) \
             RETURNING queue"
        );
        let queue: Option<(String,)> = sqlx::query_as(&sql)
            .bind(micros(now))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        if let Some((q,)) = &queue {
            self.signals.notify(q);
        }
        self.fetch(id).await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRow>, StoreError> {
        self.fetch(id).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRow>, StoreError> {
        let mut args = SqliteArguments::default();
        let mut selects: Vec<String> = where_clauses(filter)
            .into_iter()
            .map(|clause| {
                bind_filter(&mut args, filter);
                let mut sql = format!("SELECT {COLUMNS} FROM errand_jobs{clause}");
                if let Some(before) = filter.before_id {
                    sql.push_str(" AND id < ?");
                    args.add(before).expect("bind");
                }
                sql.push_str(" ORDER BY id DESC LIMIT ?");
                args.add(filter.effective_limit()).expect("bind");
                sql
            })
            .collect();
        let sql = if selects.len() == 1 {
            selects.pop().expect("one")
        } else {
            // The newest `limit` of each group, then the newest `limit` of those.
            args.add(filter.effective_limit()).expect("bind");
            let parts: Vec<String> = selects
                .iter()
                .map(|s| format!("SELECT * FROM ({s})"))
                .collect();
            format!("{} ORDER BY id DESC LIMIT ?", parts.join(" UNION ALL "))
        };
        let rows = sqlx::query_with::<Sqlite, _>(&sql, args)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(decode).collect()
    }

    async fn count(&self, filter: &ListFilter) -> Result<u64, StoreError> {
        let mut args = SqliteArguments::default();
        let parts: Vec<String> = where_clauses(filter)
            .into_iter()
            .map(|clause| {
                bind_filter(&mut args, filter);
                format!("SELECT count(*) AS n FROM errand_jobs{clause}")
            })
            .collect();
        let sql = format!("SELECT sum(n) FROM ({})", parts.join(" UNION ALL "));
        let row = sqlx::query_with::<Sqlite, _>(&sql, args)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.try_get::<i64, _>(0).map_err(db)? as u64)
    }

    async fn stats(&self, states: &[JobState]) -> Result<Vec<StateCount>, StoreError> {
        let filter = states.iter().fold(ListFilter::new(), |f, &s| f.state(s));
        let parts: Vec<String> = where_clauses(&filter)
            .into_iter()
            .map(|clause| {
                format!(
                    "SELECT queue, state, count(*) FROM errand_jobs{clause} GROUP BY queue, state"
                )
            })
            .collect();
        let sql = format!("{} ORDER BY 1, 2", parts.join(" UNION ALL "));
        let rows: Vec<(String, String, i64)> = sqlx::query_as(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|(queue, state, count)| {
                Ok(StateCount::new(
                    queue,
                    StoreError::parse_state(0, &state)?,
                    count as u64,
                ))
            })
            .collect()
    }

    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await?;
        let res = sqlx::query(&prune_sql())
            .bind(micros(before))
            .bind(limit)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(res.rows_affected())
    }

    fn signals(&self) -> &QueueSignals {
        &self.signals
    }
}

/// The plans of the hot statements: each uses the index (or id lookups) it was written for.
/// SQLite picks a partial index only when the query repeats its predicate's text, so a
/// predicate spelled differently from its index would silently scan the table.
#[cfg(test)]
mod plans {
    use super::*;

    async fn plan(store: &SqliteStore, sql: &str) -> String {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
    }

    #[tokio::test]
    async fn hot_statements_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("p.db").to_str().unwrap())
            .await
            .unwrap();
        let p = plan(&store, &complete_sql(3)).await;
        assert!(
            p.contains("USING INTEGER PRIMARY KEY") && !p.contains("errand_jobs_lease"),
            "{p}"
        );
        let p = plan(
            &store,
            &format!("UPDATE errand_jobs SET lease_expires_at = 1 {LEASE_MATCH}"),
        )
        .await;
        assert!(
            p.contains("USING INTEGER PRIMARY KEY") && !p.contains("errand_jobs_lease"),
            "{p}"
        );
        // Finding which leases a partly stale batch completed: a lookup by id per lease,
        // not a scan of the completed jobs per lease (seconds for a batch of thousands).
        let p = plan(&store, COMPLETED_BY_LEASE).await;
        assert!(
            p.contains("USING INTEGER PRIMARY KEY") && !p.contains("errand_jobs_finalized"),
            "{p}"
        );
        assert!(plan(&store, &promote_sql())
            .await
            .contains("errand_jobs_due"));
        assert!(plan(&store, &prune_sql())
            .await
            .contains("errand_jobs_finalized"));
        let unique = format!("SELECT id FROM errand_jobs WHERE unique_key = ? AND {NON_FINAL}");
        assert!(plan(&store, &unique).await.contains("errand_jobs_unique"));
        // Lists and counts, one query per state group, each on the group's index.
        let filter = JobState::ALL
            .into_iter()
            .fold(ListFilter::new().queue("q"), |f, s| f.state(s));
        let clauses = where_clauses(&filter);
        assert_eq!(clauses.len(), errand_core::STATE_INDEX_GROUPS.len());
        for (clause, index) in clauses.iter().zip([
            "errand_jobs_claim",
            "errand_jobs_lease",
            "errand_jobs_due",
            "errand_jobs_dead",
            "",
        ]) {
            let p = plan(&store, &format!("SELECT count(*) FROM errand_jobs{clause}")).await;
            if index.is_empty() {
                continue; // completed jobs have no index of their own
            }
            assert!(p.contains(index), "{clause}: {p}");
        }
    }
}
