//! Inserting jobs: one row (the single-enqueue hot path), many rows without keys in one
//! statement (options bound once when they are shared) or, from 5,000, by `COPY`
//! (`copy.rs`), keyed rows with conflict handling.
//! Every insert notifies in the same statement. [`insert_on`] serves the store's own inserts
//! and the application's transactions (`tx.rs`).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use errand_core::{unique_expired, InsertResult, JobState, NewJob, StoreError};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgConnection, Postgres, Row};

use crate::error::db;
use crate::sql::to_json;
use crate::store::PgStore;

/// What an insert did, for in-process wake-ups.
pub(crate) struct Inserted {
    pub(crate) results: Vec<InsertResult>,
    /// Queues that got available jobs.
    pub(crate) woken: BTreeSet<String>,
    /// Whether any job was inserted for later.
    pub(crate) scheduled: bool,
}

pub(crate) async fn insert(
    s: &PgStore,
    jobs: Vec<NewJob>,
    now: DateTime<Utc>,
) -> Result<Vec<InsertResult>, StoreError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = s.held().await?;
    let done = insert_on(s, conn.conn(), &jobs, now).await?;
    conn.back();
    // While this process listens, the insert's own `NOTIFY` wakes its producers (sent at
    // commit, it often arrives before the insert's answer): waking them here too made each
    // job at low rates cost one more, empty, claim.
    if !s.is_listening() {
        for q in &done.woken {
            s.inner.signals.notify(q);
        }
    }
    if done.scheduled {
        s.inner.signals.notify_scheduled();
    }
    Ok(done.results)
}

/// Inserts on `conn` (a pool connection, or the caller's transaction). Returns the
/// results and the queues made available (for in-process wake-ups after commit).
pub(crate) async fn insert_on(
    s: &PgStore,
    conn: &mut PgConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<Inserted, StoreError> {
    // Keys (unique or partition) take the general statement; the rest, the lean ones.
    let plain = |j: &NewJob| j.unique_key.is_none() && j.partition_key.is_none();
    if let [job] = jobs {
        if plain(job) {
            return one(s, conn, job, now).await;
        }
    }
    if jobs.iter().all(plain) {
        if jobs.len() >= crate::copy::COPY_FROM {
            if let Some(done) = crate::copy::copy_plain(s, conn, jobs, now).await? {
                return Ok(done);
            }
        }
        return batch_plain(s, conn, jobs, now).await;
    }
    let sql = &s.inner.sql;
    let mut out: Vec<Option<InsertResult>> = vec![None; jobs.len()];
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    let mut woken = BTreeSet::new();
    let mut scheduled = false;
    // A holder of a unique key can finish between our conflict and our lookup, or have
    // let its key go (its uniqueness period passed since it finished: released here); then
    // the key is free and the job is inserted on the next round. Three rounds settle.
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
                .bind(&s.inner.channel)
                .bind(
                    batch
                        .iter()
                        .map(|j| j.unique_states.bits())
                        .collect::<Vec<_>>(),
                )
                .bind(batch.iter().map(|j| j.unique_for_ms).collect::<Vec<_>>())
                .bind(
                    batch
                        .iter()
                        .map(|j| j.partition_key.as_deref())
                        .collect::<Vec<_>>(),
                )
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
        let mut holders: HashMap<String, i64> = HashMap::new();
        let mut expired: Vec<i64> = Vec::new();
        for r in sqlx::query(&sql.find_unique)
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?
        {
            let (id, key): (i64, String) = (r.get(0), r.get(1));
            let state = r.get::<&str, _>(2).parse::<JobState>().ok();
            let (finalized_at, unique_for_ms) = (r.get(3), r.get(4));
            if state.is_some_and(|st| unique_expired(st, finalized_at, unique_for_ms, now)) {
                // Its period passed since it finished: let go, and insert on the next round.
                expired.push(id);
            } else {
                holders.insert(key, id);
            }
        }
        if !expired.is_empty() {
            sqlx::query(&sql.release_unique)
                .bind(&expired)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
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
                StoreError::Database("unique key kept changing hands during insert; retry".into())
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
async fn one(
    s: &PgStore,
    conn: &mut PgConnection,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<Inserted, StoreError> {
    let state = job.state_at(now);
    let id: i64 = sqlx::query_scalar(&s.inner.sql.insert_one)
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
        .bind(&s.inner.channel)
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
async fn batch_plain(
    s: &PgStore,
    conn: &mut PgConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<Inserted, StoreError> {
    let (woken, scheduled) = wake_ups(jobs, now);
    let wake = payloads(&woken, scheduled);
    // One row holding every id: a thousand rows cost the client more to read.
    let query = if shares_options(jobs, now) {
        let first = &jobs[0];
        sqlx::query_as(&s.inner.sql.insert_shared)
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
        bind_job_arrays(sqlx::query_as(&s.inner.sql.insert_plain), &jobs, now).bind(now)
    };
    let (ids, _): (Option<Vec<i64>>, i64) = query
        .bind(&s.inner.channel)
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

/// What inserting `jobs` (without keys) at `now` wakes: the queues that get available jobs,
/// and whether any is scheduled.
pub(crate) fn wake_ups(jobs: &[NewJob], now: DateTime<Utc>) -> (BTreeSet<String>, bool) {
    let woken = jobs
        .iter()
        .filter(|j| j.state_at(now) == JobState::Available)
        .map(|j| j.queue.clone())
        .collect();
    let scheduled = jobs.iter().any(|j| j.state_at(now) == JobState::Scheduled);
    (woken, scheduled)
}

/// The `NOTIFY` payloads of those wake-ups: each queue, and '' (never a queue name) for
/// the schedulers.
pub(crate) fn payloads(woken: &BTreeSet<String>, scheduled: bool) -> Vec<&str> {
    woken
        .iter()
        .map(String::as_str)
        .chain(scheduled.then_some(""))
        .collect()
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
