//! The [`Store`] contract on Postgres: one statement per operation and per batch.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errand_core::{
    rescue_message, state_predicates, CancelResult, ClaimRequest, Finish, InsertResult, JobId,
    JobRow, JobState, LeaseRef, ListFilter, NewJob, PromoteReport, QueueSignals, RescueReport,
    StateCount, Store, StoreError,
};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{Arguments, PgConnection, Postgres, Row};

use crate::row::{decode, COLUMNS};
use crate::store::{db, PgStore};

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("errand types serialize to JSON")
}

/// Binds one array per job column, `$1…$10` of the batch inserts: kind, queue, args, state,
/// priority, max_attempts, run_at, tags, backoff, timeout_ms (state from `now`).
fn bind_job_arrays<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    jobs: &[&'q NewJob],
    now: DateTime<Utc>,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    query
        .bind(jobs.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.args.as_str()).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.state_at(now).as_str())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.max_attempts).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| to_json(&j.tags)).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.backoff.as_ref().map(to_json))
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.timeout_ms).collect::<Vec<_>>())
}

/// Whether every job of a batch has the first one's options (all but payload and run time),
/// and all are due now or all later: then they are bound once (`insert_shared`).
fn shares_options(jobs: &[NewJob], now: DateTime<Utc>) -> bool {
    let Some(first) = jobs.first() else {
        return false;
    };
    let due = first.run_at <= now;
    jobs.iter().all(|j| {
        (j.run_at <= now) == due
            && j.kind == first.kind
            && j.queue == first.queue
            && j.priority == first.priority
            && j.max_attempts == first.max_attempts
            && j.tags == first.tags
            && j.backoff == first.backoff
            && j.timeout_ms == first.timeout_ms
    })
}

fn lease_arrays(leases: &[LeaseRef]) -> (Vec<i64>, Vec<i32>) {
    leases.iter().map(|l| (l.id, l.attempt)).unzip()
}

/// `WHERE` clauses for a list filter: one per state index group the filter touches (so
/// each can use its group's partial index; see [`state_predicates`]), or a single one
/// without a state predicate. Queue and kind are bound once as `$1…` and shared by every
/// clause; returns the clauses, the arguments and how many were bound.
fn where_clauses(f: &ListFilter) -> (Vec<String>, PgArguments, usize) {
    let mut rest = String::new();
    let mut args = PgArguments::default();
    let mut n = 0;
    if let Some(q) = &f.queue {
        n += 1;
        rest.push_str(&format!(" AND queue = ${n}"));
        args.add(q.clone()).expect("bind");
    }
    if let Some(k) = &f.kind {
        n += 1;
        rest.push_str(&format!(" AND kind = ${n}"));
        args.add(k.clone()).expect("bind");
    }
    let preds = state_predicates(&f.states);
    let clauses = if preds.is_empty() {
        vec![format!(" WHERE true{rest}")]
    } else {
        preds
            .into_iter()
            .map(|p| format!(" WHERE {p}{rest}"))
            .collect()
    };
    (clauses, args, n)
}

/// What an insert did, for in-process wake-ups.
pub(crate) struct Inserted {
    pub(crate) results: Vec<InsertResult>,
    /// Queues that got available jobs.
    pub(crate) woken: BTreeSet<String>,
    /// Whether any job was inserted for later.
    pub(crate) scheduled: bool,
}

impl PgStore {
    /// Inserts on `conn` (a pool connection, or the caller's transaction). Returns the
    /// results and the queues made available (for in-process wake-ups after commit).
    pub(crate) async fn insert_on(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
        now: DateTime<Utc>,
    ) -> Result<Inserted, StoreError> {
        if let [job] = jobs {
            if job.unique_key.is_none() {
                return self.insert_plain(conn, job, now).await;
            }
        }
        if jobs.iter().all(|j| j.unique_key.is_none()) {
            return self.insert_batch_plain(conn, jobs, now).await;
        }
        let sql = &self.inner.sql;
        let mut out: Vec<Option<InsertResult>> = vec![None; jobs.len()];
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        let mut woken = BTreeSet::new();
        let mut scheduled = false;
        // A holder of a unique key can finish between our conflict and our lookup; then the
        // key is free and the job is inserted on the next round. Three rounds always settle.
        for _round in 0..3 {
            if pending.is_empty() {
                break;
            }
            let batch: Vec<&NewJob> = pending.iter().map(|&i| &jobs[i]).collect();
            let rows: Vec<(i64, Option<String>, i64)> =
                bind_job_arrays(sqlx::query_as(&sql.insert), &batch, now)
                    .bind(
                        batch
                            .iter()
                            .map(|j| j.unique_key.as_deref())
                            .collect::<Vec<_>>(),
                    )
                    .bind(now)
                    .bind(&self.inner.channel)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db)?;
            // Ids follow input order, so inserted rows line up with the batch in order; a
            // job whose key is not next in line was not inserted.
            let mut returned = rows.into_iter().map(|(id, key, _)| (id, key));
            let mut next = returned.next();
            let mut conflicted = Vec::new();
            for (&i, job) in pending.iter().zip(&batch) {
                match &next {
                    Some((id, key)) if *key == job.unique_key => {
                        out[i] = Some(InsertResult {
                            id: *id,
                            inserted: true,
                        });
                        match job.state_at(now) {
                            JobState::Available => {
                                woken.insert(job.queue.clone());
                            }
                            _ => scheduled = true,
                        }
                        next = returned.next();
                    }
                    _ => conflicted.push(i),
                }
            }
            if conflicted.is_empty() {
                break;
            }
            let keys: Vec<String> = conflicted
                .iter()
                .filter_map(|&i| jobs[i].unique_key.clone())
                .collect();
            let holders: HashMap<String, i64> = sqlx::query(&sql.find_unique)
                .bind(&keys)
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?
                .iter()
                .map(|r| (r.get::<String, _>(1), r.get::<i64, _>(0)))
                .collect();
            pending = Vec::new();
            for i in conflicted {
                match jobs[i].unique_key.as_ref().and_then(|k| holders.get(k)) {
                    Some(&id) => {
                        out[i] = Some(InsertResult {
                            id,
                            inserted: false,
                        })
                    }
                    None => pending.push(i),
                }
            }
        }
        let out = out
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| {
                    StoreError::Database(
                        "unique key kept changing hands during insert; retry".into(),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Inserted {
            results: out,
            woken,
            scheduled,
        })
    }

    /// One job without a unique key: a plain `INSERT … VALUES`, the cheapest statement that
    /// also notifies (the single-enqueue hot path).
    async fn insert_plain(
        &self,
        conn: &mut PgConnection,
        job: &NewJob,
        now: DateTime<Utc>,
    ) -> Result<Inserted, StoreError> {
        let state = job.state_at(now);
        let id: i64 = sqlx::query_scalar(&self.inner.sql.insert_one)
            .bind(&job.kind)
            .bind(&job.queue)
            .bind(&job.args)
            .bind(state.as_str())
            .bind(job.priority)
            .bind(job.max_attempts)
            .bind(job.run_at)
            .bind(now)
            .bind(to_json(&job.tags))
            .bind(job.backoff.as_ref().map(to_json))
            .bind(job.timeout_ms)
            .bind(&self.inner.channel)
            // The queue wakes its producers; an empty payload wakes schedulers.
            .bind(if state == JobState::Available {
                job.queue.as_str()
            } else {
                ""
            })
            .fetch_one(conn)
            .await
            .map_err(db)?;
        let available = state == JobState::Available;
        Ok(Inserted {
            results: vec![InsertResult { id, inserted: true }],
            woken: if available {
                BTreeSet::from([job.queue.clone()])
            } else {
                BTreeSet::new()
            },
            scheduled: !available,
        })
    }

    /// Jobs without unique keys: no conflict handling, no ordinality; ids are handed out in
    /// input order, so the sorted ids line up with the input.
    async fn insert_batch_plain(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
        now: DateTime<Utc>,
    ) -> Result<Inserted, StoreError> {
        let woken: BTreeSet<String> = jobs
            .iter()
            .filter(|j| j.state_at(now) == JobState::Available)
            .map(|j| j.queue.clone())
            .collect();
        let scheduled = jobs.iter().any(|j| j.state_at(now) == JobState::Scheduled);
        let wake: Vec<&str> = woken
            .iter()
            .map(String::as_str)
            .chain(scheduled.then_some(""))
            .collect();
        // One row holding every id: a thousand rows cost the client more to read.
        let query = if shares_options(jobs, now) {
            let first = &jobs[0];
            sqlx::query_as(&self.inner.sql.insert_shared)
                .bind(&first.kind)
                .bind(&first.queue)
                .bind(first.state_at(now).as_str())
                .bind(first.priority)
                .bind(first.max_attempts)
                .bind(now)
                .bind(to_json(&first.tags))
                .bind(first.backoff.as_ref().map(to_json))
                .bind(first.timeout_ms)
                .bind(jobs.iter().map(|j| j.args.as_str()).collect::<Vec<_>>())
                .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
        } else {
            let jobs: Vec<&NewJob> = jobs.iter().collect();
            bind_job_arrays(sqlx::query_as(&self.inner.sql.insert_plain), &jobs, now).bind(now)
        };
        let (ids, _): (Option<Vec<i64>>, i64) = query
            .bind(&self.inner.channel)
            .bind(wake)
            .fetch_one(conn)
            .await
            .map_err(db)?;
        let mut ids = ids.unwrap_or_default();
        ids.sort_unstable();
        Ok(Inserted {
            results: ids
                .into_iter()
                .map(|id| InsertResult { id, inserted: true })
                .collect(),
            woken,
            scheduled,
        })
    }

    /// Discards a claimed job whose row cannot be read, recording why (see
    /// [`JobRow::corrupt`]): it never reaches a worker, and the rest of its claim runs.
    async fn quarantine(&self, job: &JobRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(error) = job.unreadable_error(now) else {
            return Ok(());
        };
        tracing::error!(job_id = job.id, error = %error.message, "claimed job cannot be read: discarding it");
        sqlx::query(&self.inner.sql.quarantine)
            .bind(now)
            .bind(to_json(&error))
            .bind(job.id)
            .bind(job.attempt)
            .execute(&self.inner.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn fetch(&self, id: JobId) -> Result<Option<JobRow>, StoreError> {
        sqlx::query(&self.inner.sql.get)
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(decode)
            .transpose()
    }
}

#[async_trait]
impl Store for PgStore {
    async fn insert(
        &self,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.inner.pool.acquire().await.map_err(db)?;
        let done = self.insert_on(&mut conn, &jobs, now).await?;
        for q in &done.woken {
            self.inner.signals.notify(q);
        }
        if done.scheduled {
            self.inner.signals.notify_scheduled();
        }
        Ok(done.results)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError> {
        let lease_until = errand_core::later(req.now, req.lease);
        let rows = sqlx::query(&self.inner.sql.claim)
            .bind(req.now)
            .bind(&req.worker_id)
            .bind(lease_until)
            .bind(&req.queue)
            .bind(i64::from(req.limit))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?;
        let (mut jobs, unreadable): (Vec<_>, Vec<_>) = rows
            .iter()
            .map(decode)
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
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let effects: Vec<_> = batch.iter().map(|f| f.effect()).collect();
        let rows = sqlx::query(&self.inner.sql.finish)
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
            .bind(&self.inner.channel)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?;
        let mut applied = Vec::with_capacity(rows.len());
        let mut woken = BTreeSet::new();
        let mut scheduled = false;
        for r in &rows {
            applied.push(r.get::<i64, _>(0));
            match r.get::<&str, _>(2) {
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
            self.inner.signals.notify(q);
        }
        if scheduled {
            self.inner.signals.notify_scheduled();
        }
        Ok(applied)
    }

    async fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, attempts) = lease_arrays(leases);
        sqlx::query_scalar(&self.inner.sql.extend)
            // Planned for each call's arrays: see `Sql::finish`.
            .persistent(false)
            .bind(until)
            .bind(ids)
            .bind(attempts)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)
    }

    async fn release(&self, leases: &[LeaseRef], now: DateTime<Utc>) -> Result<u64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let (ids, attempts) = lease_arrays(leases);
        let n: i64 = sqlx::query(&self.inner.sql.release)
            // Planned for each call's arrays: see `Sql::finish`.
            .persistent(false)
            .bind(now)
            .bind(ids)
            .bind(attempts)
            .bind(&self.inner.channel)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(db)?
            .get(0);
        Ok(n as u64)
    }

    async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<RescueReport, StoreError> {
        // The message is rescue_message(worker), assembled around the worker id in SQL.
        let template = rescue_message(Some("\u{1}"));
        let (before, after) = template
            .split_once('\u{1}')
            .expect("template has the marker");
        let at = serde_json::to_value(now).expect("timestamps serialize");
        let states: Vec<String> = sqlx::query_scalar(&self.inner.sql.rescue)
            .bind(now)
            .bind(i64::from(limit))
            .bind(at.as_str().unwrap_or_default())
            .bind(before)
            .bind(after)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?;
        let discarded = states.iter().filter(|s| *s == "discarded").count() as u64;
        Ok(RescueReport {
            retried: states.len() as u64 - discarded,
            discarded,
        })
    }

    async fn promote_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<PromoteReport, StoreError> {
        let row = sqlx::query(&self.inner.sql.promote)
            .bind(now)
            .bind(i64::from(limit))
            .bind(&self.inner.channel)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(db)?;
        let queues: Vec<String> = row.try_get(0).map_err(db)?;
        let counts: Vec<i64> = row.try_get(1).map_err(db)?;
        let later: Option<DateTime<Utc>> = row.try_get(2).map_err(db)?;
        let promoted = counts.iter().sum::<i64>() as u64;
        for q in &queues {
            self.inner.signals.notify(q);
        }
        Ok(PromoteReport {
            promoted,
            queues,
            next_due: if promoted == u64::from(limit) {
                Some(now)
            } else {
                later
            },
        })
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelResult, StoreError> {
        let row = sqlx::query(&self.inner.sql.cancel)
            .bind(now)
            .bind(id)
            .fetch_optional(&self.inner.pool)
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
        let queue: Option<String> = sqlx::query_scalar(&self.inner.sql.retry)
            .bind(now)
            .bind(id)
            .bind(&self.inner.channel)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db)?;
        if let Some(q) = &queue {
            self.inner.signals.notify(q);
        }
        self.fetch(id).await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRow>, StoreError> {
        self.fetch(id).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRow>, StoreError> {
        let (clauses, mut args, mut n) = where_clauses(filter);
        let mut before = String::new();
        if let Some(id) = filter.before_id {
            n += 1;
            before = format!(" AND id < ${n}");
            args.add(id).expect("bind");
        }
        n += 1;
        args.add(i64::from(filter.effective_limit())).expect("bind");
        let table = &self.inner.sql.table;
        let selects: Vec<String> = clauses
            .iter()
            .map(|c| {
                format!("SELECT {COLUMNS} FROM {table}{c}{before} ORDER BY id DESC LIMIT ${n}")
            })
            .collect();
        let sql = match selects.as_slice() {
            [one] => one.clone(),
            // The newest `limit` of each group, then the newest `limit` of those.
            _ => format!(
                "({}) ORDER BY id DESC LIMIT ${n}",
                selects.join(") UNION ALL (")
            ),
        };
        let rows = sqlx::query_with::<Postgres, _>(&sql, args)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?;
        rows.iter().map(decode).collect()
    }

    async fn count(&self, filter: &ListFilter) -> Result<u64, StoreError> {
        let (clauses, args, _) = where_clauses(filter);
        let table = &self.inner.sql.table;
        let parts: Vec<String> = clauses
            .iter()
            .map(|c| format!("SELECT count(*) AS n FROM {table}{c}"))
            .collect();
        let sql = format!("SELECT sum(n)::int8 FROM ({}) c", parts.join(" UNION ALL "));
        let n: Option<i64> = sqlx::query_with::<Postgres, _>(&sql, args)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(db)?
            .get(0);
        Ok(n.unwrap_or(0) as u64)
    }

    async fn stats(&self, states: &[JobState]) -> Result<Vec<StateCount>, StoreError> {
        let filter = states.iter().fold(ListFilter::new(), |f, &s| f.state(s));
        let (clauses, _, _) = where_clauses(&filter);
        let table = &self.inner.sql.table;
        let parts: Vec<String> = clauses
            .iter()
            .map(|c| format!("SELECT queue, state, count(*) FROM {table}{c} GROUP BY queue, state"))
            .collect();
        let sql = format!("{} ORDER BY 1, 2", parts.join(" UNION ALL "));
        let rows = sqlx::query(&sql)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let state: String = r.get(1);
                Ok(StateCount::new(
                    r.get::<String, _>(0),
                    StoreError::parse_state(0, &state)?,
                    r.get::<i64, _>(2) as u64,
                ))
            })
            .collect()
    }

    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let res = sqlx::query(&self.inner.sql.prune)
            .bind(before)
            .bind(i64::from(limit))
            .execute(&self.inner.pool)
            .await
            .map_err(db)?;
        Ok(res.rows_affected())
    }

    async fn now(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        self.inner.clock.now(&self.inner.pool, local).await
    }

    fn signals(&self) -> &QueueSignals {
        &self.inner.signals
    }

    fn listen(&self) {
        PgStore::listen(self);
    }

    fn hears_other_processes(&self) -> bool {
        self.inner.listener.get().is_some()
    }

    fn detached(&self) -> Option<std::sync::Arc<dyn Store>> {
        Some(std::sync::Arc::new(self.with_own_pool(2)))
    }
}
