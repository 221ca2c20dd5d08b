//! Claiming: one `UPDATE … RETURNING` takes the next jobs of a queue; a claimed row that
//! cannot be read is discarded with the reason, and the rest of the claim runs.
//!
//! A metered queue (a per-key or a rate limit) is claimed in one write transaction instead:
//! its record read, the jobs chosen by errand_core's `claim_metered`, then taken, and the
//! record's bucket and key cursor written. The one-statement claim takes nothing from such a
//! queue, so a process that has not seen the limit yet cannot take past it: an empty claim
//! looks at the queue's record, and from then on this process claims it metered.

use chrono::{DateTime, Utc};
use errand_core::{
    claim_metered, ClaimRequest, JobId, JobRow, Meter, MeteredQueue, QueueRecord, StoreError, Take,
    KEY_BUCKETS_PRUNED, UNKEYED_SCAN,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::direct::lite;
use crate::error::db;
use crate::queue::QUEUE_COLUMNS;
use crate::row::{
    claimed_bytes, claimed_text, decode_claimed_text, micros, CLAIMED, CLAIMED_GUARDED,
};
use crate::sql::to_json;
use crate::store::SqliteStore;

/// How many jobs a claim of queue `?4` wanting `?5` may take: none while paused or metered,
/// the free slots under a limit, `?5` for a queue without a record (one primary-key probe).
/// The limit counts the running jobs of workers other than `?2` plus what `?2` holds (`?6`,
/// see `ClaimRequest::held`), or every running job when `?6` is NULL.
const CLAIMABLE: &str = "coalesce((SELECT CASE WHEN q.paused OR q.max_per_key IS NOT NULL \
     OR q.rate_starts IS NOT NULL OR q.key_rate_starts IS NOT NULL THEN 0 \
     WHEN q.max_running IS NULL \
     THEN ?5 ELSE max(0, min(?5, q.max_running - (SELECT count(*) FROM errand_jobs r \
     WHERE r.state = 'running' AND r.queue = ?4 AND (?6 IS NULL OR r.attempted_by IS NOT ?2)) \
     - coalesce(?6, 0))) END \
     FROM errand_queues q WHERE q.name = ?4), ?5)";

/// The one-statement claim (see [`claim`]) returning `claimed`.
fn claim_sql(claimed: &str) -> String {
    format!(
        "UPDATE errand_jobs SET state = 'running', attempt = attempt + 1, attempted_at = ?1, \
         attempted_by = ?2, lease_expires_at = ?3 \
         WHERE id IN (SELECT id FROM errand_jobs WHERE state = 'available' AND queue = ?4 \
                      ORDER BY priority, run_at, id LIMIT {CLAIMABLE}) \
         RETURNING {claimed}"
    )
}

static CLAIM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| claim_sql(CLAIMED));
static CLAIM_GUARDED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| claim_sql(CLAIMED_GUARDED));

/// Whether `e` is `json_array` refusing a BLOB (see [`CLAIMED_GUARDED`]).
fn refused_blob(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(_, Some(m)) if m.contains("BLOB"))
}

pub(crate) async fn claim(s: &SqliteStore, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError> {
    if s.metered.contains(&req.queue) {
        return metered(s, req).await;
    }
    let w = s.writer().await?;
    let lease_until = errand_core::later(req.now, req.lease);
    // One statement: SQLite takes the write lock for it, so claims never overlap (and a
    // limit's count of running jobs cannot change under it). On the store's own connection,
    // every row read in the one call (see `direct`). A claim that may take more rows than
    // run in place takes the first `SHORT_ROWS` in place and only the rest, if it filled
    // them, on the connection's thread: a worker woken for one new job (the usual wake-up)
    // does not wait for the thread, and a claim that met fewer jobs than its cap met all
    // there were (or all a limit leaves: the count is the same), so it asks no more.
    let short = crate::direct::SHORT_ROWS as u32;
    let mut rows = claim_rows(s, &w, req, lease_until, req.limit.min(short), req.held).await?;
    if req.limit > short && rows.len() == short as usize {
        // What the first part took runs under this worker now: under a limit it counts as
        // held, like the rest this worker holds.
        let held = req.held.map(|h| h.saturating_add(short));
        let rest = claim_rows(s, &w, req, lease_until, req.limit - short, held).await?;
        rows.extend(rest);
    }
    // Decoding needs no turn: let the completer write meanwhile.
    drop(w);
    if rows.is_empty() && is_metered(s, &req.queue).await? {
        s.metered.learn(&req.queue, true);
        return metered(s, req).await;
    }
    let jobs = rows
        .iter()
        .map(|row| decode_claimed_text(row, req, lease_until))
        .collect::<Result<Vec<_>, _>>()?;
    checked(s, req, jobs).await
}

/// One claim statement of `req`'s queue taking at most `limit` jobs (`held`: what this
/// worker holds, see `ClaimRequest::held`), as claimed text rows.
async fn claim_rows(
    s: &SqliteStore,
    w: &crate::store::Writer<'_>,
    req: &ClaimRequest,
    lease_until: DateTime<Utc>,
    limit: u32,
    held: Option<u32>,
) -> Result<Vec<(String, bool)>, StoreError> {
    let bound = (
        micros(req.now),
        req.worker_id.clone(),
        micros(lease_until),
        req.queue.clone(),
        limit,
        held,
    );
    let seen = s.workflows_seen.clone();
    w.run(limit as usize, move |c| {
        let params = rusqlite::params![bound.0, bound.1, bound.2, bound.3, bound.4, bound.5];
        let run = |sql: &str| -> Result<Vec<(String, bool)>, rusqlite::Error> {
            tracing::debug!(target: "errand_sqlite::query", statement = sql);
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(params, |r| r.get_ref(0).map(claimed_text))?;
            rows.collect()
        };
        let rows = match run(&CLAIM) {
            // The failed statement changed nothing: claim again, reading every column
            // guarded, so the row that failed it is discarded and the rest run.
            Err(e) if refused_blob(&e) => run(&CLAIM_GUARDED).map_err(lite),
            other => other.map_err(lite),
        }?;
        if !rows.is_empty() {
            learn_workflows(c, &seen)?;
        }
        Ok(rows)
    })
    .await
}

/// Until this store has met workflows, asks after each claim that took jobs whether any
/// workflow exists (one probe of a table of a few rows; none once it has): the claimed jobs
/// may be steps, whose completions must then be settled by the outcome batches
/// (`outcome.rs`). Asked after the claim, so a workflow inserted later cannot have a step
/// among these jobs.
pub(crate) fn learn_workflows(
    c: &rusqlite::Connection,
    seen: &std::sync::atomic::AtomicBool,
) -> Result<(), StoreError> {
    use std::sync::atomic::Ordering;
    if seen.load(Ordering::Relaxed) {
        return Ok(());
    }
    let any: bool = crate::direct::prepare(c, "SELECT EXISTS (SELECT 1 FROM errand_workflows)")?
        .query_row([], |r| r.get(0))
        .map_err(lite)?;
    if any {
        seen.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Whether `queue`'s record holds a per-key or rate limit.
async fn is_metered(s: &SqliteStore, queue: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM errand_queues WHERE name = ? \
         AND (max_per_key IS NOT NULL OR rate_starts IS NOT NULL OR key_rate_starts IS NOT NULL)",
    )
    .bind(queue)
    .fetch_optional(s.reader())
    .await
    .map_err(db)?;
    Ok(found.is_some())
}

/// The claimed jobs in claim order, the unreadable ones discarded.
async fn checked(
    s: &SqliteStore,
    req: &ClaimRequest,
    jobs: Vec<JobRow>,
) -> Result<Vec<JobRow>, StoreError> {
    let (mut jobs, unreadable): (Vec<_>, Vec<_>) =
        jobs.into_iter().partition(|j| j.corrupt.is_none());
    for job in unreadable {
        // On failure the job's lease runs out and the rescuer retries it; it is met
        // again at its next claim. The readable jobs are returned either way.
        if let Err(e) = quarantine(s, &job, req.now).await {
            tracing::warn!(job_id = job.id, error = %e, "could not discard an unreadable job");
        }
    }
    jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
    Ok(jobs)
}

/// A metered claim: one write transaction (see the module's docs).
async fn metered(s: &SqliteStore, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError> {
    let w = s.writer().await?;
    let lease_until = errand_core::later(req.now, req.lease);
    let mut tx = w.begin().await?;
    let sql = format!(
        "SELECT {QUEUE_COLUMNS}, tokens, refilled_at, key_cursor FROM errand_queues \
         WHERE name = ?"
    );
    let found = sqlx::query(&sql)
        .bind(&req.queue)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    let (record, meter) = match &found {
        Some(row) => meter_of(row)?,
        None => (
            QueueRecord::new(req.queue.clone(), false, req.now),
            Meter::default(),
        ),
    };
    s.metered.learn(&req.queue, record.is_metered());
    let mut q = Queue {
        conn: &mut tx,
        queue: &req.queue,
        worker: &req.worker_id,
        held: req.held,
    };
    let (ids, meter) = claim_metered(&mut q, &record, meter, req.limit, req.now).await?;
    let sql = format!(
        "UPDATE errand_jobs SET state = 'running', attempt = attempt + 1, attempted_at = ?1, \
         attempted_by = ?2, lease_expires_at = ?3 \
         WHERE id IN (SELECT value FROM json_each(?4)) AND state = 'available' \
         RETURNING CAST({CLAIMED_GUARDED} AS BLOB)"
    );
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(&sql)
        .bind(micros(req.now))
        .bind(&req.worker_id)
        .bind(micros(lease_until))
        .bind(to_json(&ids))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    if !rows.is_empty() && !s.workflows_seen.load(std::sync::atomic::Ordering::Relaxed) {
        // As `learn_workflows`, in this claim's transaction.
        let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM errand_workflows)")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if any {
            s.workflows_seen
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    if found.is_some() {
        sqlx::query(
            "UPDATE errand_queues SET tokens = ?, refilled_at = ?, key_cursor = ? WHERE name = ?",
        )
        .bind(meter.tokens)
        .bind(meter.refilled_at.map(micros))
        .bind(&meter.cursor)
        .bind(&req.queue)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    drop(w);
    let jobs = rows
        .iter()
        .map(|bytes| decode_claimed_text(&claimed_bytes(bytes), req, lease_until))
        .collect::<Result<Vec<_>, _>>()?;
    checked(s, req, jobs).await
}

/// A queue record and its meter, from [`QUEUE_COLUMNS`] followed by the meter's columns.
fn meter_of(row: &SqliteRow) -> Result<(QueueRecord, Meter), StoreError> {
    let get = |i: usize| row.try_get::<Option<i64>, _>(i).map_err(db);
    let record = crate::queue::record((
        row.try_get(0).map_err(db)?,
        row.try_get(1).map_err(db)?,
        get(2)?,
        row.try_get(3).map_err(db)?,
        get(4)?,
        get(5)?,
        get(6)?,
        get(7)?,
        get(8)?,
    ))?;
    let meter = Meter {
        tokens: row.try_get(9).map_err(db)?,
        refilled_at: get(10)?.and_then(DateTime::from_timestamp_micros),
        cursor: row.try_get(11).map_err(db)?,
    };
    Ok((record, meter))
}

/// The queue's jobs as a metered claim sees them, inside its transaction.
struct Queue<'a> {
    conn: &'a mut SqliteConnection,
    queue: &'a str,
    /// The claiming worker and what it holds (see `ClaimRequest::held`).
    worker: &'a str,
    held: Option<u32>,
}

impl MeteredQueue for Queue<'_> {
    async fn running(&mut self, key: Option<&str>) -> Result<u64, StoreError> {
        let n: i64 = match key {
            None => sqlx::query_scalar(
                "SELECT count(*) + coalesce(?3, 0) FROM errand_jobs WHERE state = 'running' \
                 AND queue = ?1 AND (?3 IS NULL OR attempted_by IS NOT ?2)",
            )
            .bind(self.queue)
            .bind(self.worker)
            .bind(self.held),
            Some(k) => sqlx::query_scalar(
                "SELECT count(*) FROM errand_jobs WHERE state = 'running' AND queue = ? \
                 AND partition_key IS NOT NULL AND partition_key = ?",
            )
            .bind(self.queue)
            .bind(k),
        }
        .fetch_one(&mut *self.conn)
        .await
        .map_err(db)?;
        Ok(n.max(0) as u64)
    }

    async fn next_key(&mut self, after: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT partition_key FROM errand_jobs WHERE state = 'available' AND queue = ? \
             AND partition_key IS NOT NULL AND partition_key > ? ORDER BY partition_key LIMIT 1",
        )
        .bind(self.queue)
        .bind(after)
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db)
    }

    async fn take(&mut self, from: Take<'_>, n: u32) -> Result<Vec<JobId>, StoreError> {
        const ORDER: &str = "ORDER BY priority, run_at, id LIMIT";
        let sql = match from {
            Take::InOrder => format!(
                "SELECT id FROM errand_jobs WHERE state = 'available' AND queue = ?1 {ORDER} ?2"
            ),
            Take::Key(_) => format!(
                "SELECT id FROM errand_jobs WHERE state = 'available' AND queue = ?1 \
                 AND partition_key IS NOT NULL AND partition_key = ?3 {ORDER} ?2"
            ),
            Take::Unkeyed => format!(
                "SELECT id FROM (SELECT id, partition_key, priority, run_at FROM errand_jobs \
                 WHERE state = 'available' AND queue = ?1 {ORDER} {UNKEYED_SCAN}) \
                 WHERE partition_key IS NULL {ORDER} ?2"
            ),
        };
        let mut q = sqlx::query_scalar(&sql).bind(self.queue).bind(n);
        if let Take::Key(k) = from {
            q = q.bind(k);
        }
        q.fetch_all(&mut *self.conn).await.map_err(db)
    }

    async fn key_bucket(&mut self, key: &str) -> Result<Option<(f64, DateTime<Utc>)>, StoreError> {
        let row: Option<(f64, i64)> = sqlx::query_as(
            "SELECT tokens, refilled_at FROM errand_queue_keys WHERE queue = ? AND key = ?",
        )
        .bind(self.queue)
        .bind(key)
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db)?;
        // A bucket whose time cannot be read counts as full.
        Ok(row.and_then(|(t, at)| Some((t, DateTime::from_timestamp_micros(at)?))))
    }

    async fn set_key_bucket(
        &mut self,
        key: &str,
        tokens: f64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO errand_queue_keys (queue, key, tokens, refilled_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (queue, key) DO UPDATE SET tokens = excluded.tokens, \
             refilled_at = excluded.refilled_at",
        )
        .bind(self.queue)
        .bind(key)
        .bind(tokens)
        .bind(micros(at))
        .execute(&mut *self.conn)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn prune_key_buckets(&mut self, full_before: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = format!(
            "DELETE FROM errand_queue_keys WHERE rowid IN (SELECT rowid FROM errand_queue_keys \
             WHERE queue = ? AND refilled_at < ? LIMIT {KEY_BUCKETS_PRUNED})"
        );
        sqlx::query(&sql)
            .bind(self.queue)
            .bind(micros(full_before))
            .execute(&mut *self.conn)
            .await
            .map_err(db)?;
        Ok(())
    }
}

/// Discards a claimed job whose row cannot be read, recording why (see
/// [`JobRow::corrupt`]): it never reaches a worker, and the rest of its claim runs. The
/// history is appended to when it is a JSON array, started afresh when the history
/// itself is what is unreadable (the problem quotes what it held).
async fn quarantine(s: &SqliteStore, job: &JobRow, now: DateTime<Utc>) -> Result<(), StoreError> {
    let Some(error) = job.unreadable_error(now) else {
        return Ok(());
    };
    tracing::error!(job_id = job.id, error = %error.message, "claimed job cannot be read: discarding it");
    let error = to_json(&error);
    let w = s.writer().await?;
    sqlx::query(
        "UPDATE errand_jobs SET state = 'discarded', finalized_at = ?, lease_expires_at = NULL, \
         has_dependents = has_dependents, \
         errors = CASE WHEN json_valid(errors) AND json_type(errors) = 'array' \
                       THEN json_insert(errors, '$[#]', json(?)) ELSE json_array(json(?)) END \
         WHERE id = ? AND state = 'running' AND attempt = ?",
    )
    .bind(micros(now))
    .bind(&error)
    .bind(&error)
    .bind(job.id)
    .bind(job.attempt)
    .execute(w.pool())
    .await
    .map_err(db)?;
    Ok(())
}
