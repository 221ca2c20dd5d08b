//! Queue records: pause, resume and limits, read by every worker's queue watcher (woken at
//! once in this process, by polling in others) and by the claim itself.

use chrono::{DateTime, Utc};
use errand_core::{check_queue_name, QueueLimits, QueueRecord, RateLimit, StoreError};

use crate::error::db;
use crate::row::{micros, time};
use crate::store::SqliteStore;

/// A record's columns, in [`QUEUE_COLUMNS`]' order.
pub(crate) type Row = (
    String,
    bool,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The columns of a queue record.
pub(crate) const QUEUE_COLUMNS: &str = "name, paused, max_running, updated_at, max_per_key, \
     rate_starts, rate_period_ms, key_rate_starts, key_rate_period_ms";

pub(crate) async fn set_paused(
    s: &SqliteStore,
    queue: &str,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<QueueRecord, StoreError> {
    check_queue_name(queue)?;
    let w = s.writer().await?;
    let sql = format!(
        "INSERT INTO errand_queues (name, paused, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at \
         RETURNING {QUEUE_COLUMNS}"
    );
    let row: Row = sqlx::query_as(&sql)
        .bind(queue)
        .bind(paused)
        .bind(micros(now))
        .fetch_all(w.pool())
        .await
        .map_err(db)
        .and_then(crate::sql::one)?;
    drop(w);
    s.signals.notify_controls();
    if !paused {
        s.signals.notify(queue);
    }
    record(row)
}

pub(crate) async fn set_limits(
    s: &SqliteStore,
    queue: &str,
    limits: &QueueLimits,
    now: DateTime<Utc>,
) -> Result<QueueRecord, StoreError> {
    errand_core::check_queue_limits(queue, limits)?;
    let w = s.writer().await?;
    let mut tx = w.begin().await?;
    let key_rate = (
        limits.rate_per_key.map(|r| i64::from(r.starts)),
        limits.rate_per_key.map(|r| r.period_ms()),
    );
    // A new rate per key starts with full key buckets…
    sqlx::query(
        "DELETE FROM errand_queue_keys WHERE queue = ?1 AND EXISTS (SELECT 1 FROM errand_queues \
         WHERE name = ?1 AND (key_rate_starts IS NOT ?2 OR key_rate_period_ms IS NOT ?3))",
    )
    .bind(queue)
    .bind(key_rate.0)
    .bind(key_rate.1)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    // … and a new rate with a full bucket.
    let sql = format!(
        "INSERT INTO errand_queues (name, max_running, updated_at, max_per_key, rate_starts, \
         rate_period_ms, key_rate_starts, key_rate_period_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (name) DO UPDATE SET max_running = excluded.max_running, \
         max_per_key = excluded.max_per_key, rate_starts = excluded.rate_starts, \
         rate_period_ms = excluded.rate_period_ms, key_rate_starts = excluded.key_rate_starts, \
         key_rate_period_ms = excluded.key_rate_period_ms, key_cursor = NULL, \
         tokens = CASE WHEN rate_starts IS excluded.rate_starts \
                        AND rate_period_ms IS excluded.rate_period_ms THEN tokens END, \
         updated_at = excluded.updated_at RETURNING {QUEUE_COLUMNS}"
    );
    let row: Row = sqlx::query_as(&sql)
        .bind(queue)
        .bind(limits.max_running.map(i64::from))
        .bind(micros(now))
        .bind(limits.max_per_key.map(i64::from))
        .bind(limits.rate.map(|r| i64::from(r.starts)))
        .bind(limits.rate.map(|r| r.period_ms()))
        .bind(key_rate.0)
        .bind(key_rate.1)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)
        .and_then(crate::sql::one)?;
    tx.commit().await.map_err(db)?;
    drop(w);
    let record = record(row)?;
    s.metered.learn(queue, record.is_metered());
    s.signals.notify_controls();
    s.signals.notify(queue);
    Ok(record)
}

/// What a poll saw besides the queues with work: a fingerprint of the queue records and the
/// earliest due time of a scheduled or retryable job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PollSeen {
    records: String,
    next_due: Option<i64>,
}

pub(crate) async fn with_available(
    s: &SqliteStore,
    queues: &[String],
) -> Result<Vec<String>, StoreError> {
    // One probe of the claim index per queue; and, in the same statement, what other
    // processes may have changed (SQLite cannot tell this process): the queue records'
    // count and change times (a pause, resume or limit sets `updated_at`), and the first
    // due time on the due index. The worker's watcher and scheduler then poll only as a
    // fallback (`Store::poll_reports_changes`).
    let rows: Vec<(Option<String>, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT value, NULL, NULL FROM json_each(?1) WHERE EXISTS \
           (SELECT 1 FROM errand_jobs WHERE state = 'available' AND queue = json_each.value) \
         UNION ALL \
         SELECT NULL, \
           (SELECT count(*) || ':' || coalesce(max(updated_at), 0) || ':' || total(updated_at) \
            FROM errand_queues), \
           (SELECT min(run_at) FROM errand_jobs WHERE (state = 'scheduled' OR state = 'retryable'))",
    )
    .bind(crate::sql::to_json(&queues))
    .fetch_all(s.reader())
    .await
    .map_err(db)?;
    let mut found = Vec::with_capacity(rows.len());
    let mut seen = None;
    for (queue, records, next_due) in rows {
        match queue {
            Some(q) => found.push(q),
            None => {
                seen = Some(PollSeen {
                    records: records.unwrap_or_default(),
                    next_due,
                })
            }
        }
    }
    if let Some(seen) = seen {
        let now = micros(Utc::now());
        if seen.next_due.is_some_and(|due| due <= now) {
            s.signals.notify_scheduled();
        }
        let mut last = s.last_poll.lock().unwrap_or_else(|e| e.into_inner());
        // The first poll has nothing to compare with, and a change may have come between the
        // watcher's first read and this poll: it wakes the watcher once, to be sure.
        if last.as_ref().is_none_or(|l| l.records != seen.records) {
            s.signals.notify_controls();
        }
        *last = Some(seen);
    }
    Ok(found)
}

pub(crate) async fn oldest_available(
    s: &SqliteStore,
) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT queue, min(run_at) FROM errand_jobs WHERE state = 'available' \
         GROUP BY queue ORDER BY queue",
    )
    .fetch_all(s.reader())
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|(q, at)| {
            let at =
                time(at).map_err(|e| StoreError::Database(format!("queue {q}: {e}").into()))?;
            Ok((q, at))
        })
        .collect()
}

pub(crate) async fn queues(s: &SqliteStore) -> Result<Vec<QueueRecord>, StoreError> {
    let sql = format!("SELECT {QUEUE_COLUMNS} FROM errand_queues ORDER BY name");
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .fetch_all(s.reader())
        .await
        .map_err(db)?;
    let records = rows
        .into_iter()
        .map(record)
        .collect::<Result<Vec<_>, _>>()?;
    s.metered.learn_all(&records);
    Ok(records)
}

pub(crate) fn record(
    (name, paused, max, at, per_key, starts, period_ms, key_starts, key_period_ms): Row,
) -> Result<QueueRecord, StoreError> {
    let at = time(at).map_err(|e| StoreError::Database(format!("queue {name}: {e}").into()))?;
    let count = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok());
    let limits = QueueLimits {
        max_running: count(max),
        max_per_key: count(per_key),
        rate: RateLimit::from_stored(starts, period_ms),
        rate_per_key: RateLimit::from_stored(key_starts, key_period_ms),
    };
    Ok(QueueRecord::new(name, paused, at).with_limits(limits))
}
