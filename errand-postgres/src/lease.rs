//! Leases: extending the running jobs' leases, releasing them unstarted at shutdown, and
//! rescuing the jobs of leases that ran out (their worker died).

use chrono::{DateTime, Utc};
use errand_core::{rescue_message, JobId, LeaseRef, RescueReport, StoreError};
use sqlx::Row;

use crate::error::db;
use crate::store::PgStore;

pub(crate) async fn extend(
    s: &PgStore,
    leases: &[LeaseRef],
    until: DateTime<Utc>,
) -> Result<Vec<JobId>, StoreError> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, attempts) = lease_arrays(leases);
    let _alone = s.inner.running_rows.write().await;
    sqlx::query_scalar(&s.inner.sql.extend)
        // Planned for each call's arrays: see `Sql::finish`.
        .persistent(false)
        .bind(until)
        .bind(ids)
        .bind(attempts)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)
}

pub(crate) async fn release(
    s: &PgStore,
    leases: &[LeaseRef],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    if leases.is_empty() {
        return Ok(0);
    }
    let (ids, attempts) = lease_arrays(leases);
    let _alone = s.inner.running_rows.write().await;
    let n: i64 = sqlx::query(&s.inner.sql.release)
        // Planned for each call's arrays: see `Sql::finish`.
        .persistent(false)
        .bind(now)
        .bind(ids)
        .bind(attempts)
        .bind(&s.inner.channel)
        .fetch_one(&s.inner.pool)
        .await
        .map_err(db)?
        .get(0);
    Ok(n as u64)
}

pub(crate) async fn rescue_expired(
    s: &PgStore,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<RescueReport, StoreError> {
    // The message is rescue_message(worker), assembled around the worker id in SQL.
    let template = rescue_message(Some("\u{1}"));
    let (before, after) = template
        .split_once('\u{1}')
        .expect("template has the marker");
    let at = serde_json::to_value(now).expect("timestamps serialize");
    let states: Vec<String> = sqlx::query_scalar(&s.inner.sql.rescue)
        .bind(now)
        .bind(i64::from(limit))
        .bind(at.as_str().unwrap_or_default())
        .bind(before)
        .bind(after)
        .bind(&s.inner.channel)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
    let discarded = states.iter().filter(|s| *s == "discarded").count() as u64;
    if discarded > 0 {
        s.inner.signals.notify_ended();
        s.settled_wake();
    }
    Ok(RescueReport {
        retried: states.len() as u64 - discarded,
        discarded,
    })
}

fn lease_arrays(leases: &[LeaseRef]) -> (Vec<i64>, Vec<i32>) {
    leases.iter().map(|l| (l.id, l.attempt)).unzip()
}
