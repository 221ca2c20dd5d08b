//! The database's clock, as the store's [`Store::now`](errand_core::Store::now).
//!
//! Every timestamp errand writes or compares on Postgres (claim times and leases, rescue,
//! promotion, run times of new and retried jobs, cron ticks) is taken from here, so leases
//! and schedules are judged by one clock however wrong a worker's own is: a worker 40 s
//! fast cannot rescue a healthy worker's running jobs or start scheduled jobs early.
//!
//! Reading `clock_timestamp()` for every call would double the round trips of the hot
//! paths, so the clock is anchored: one query gives the database's time, pinned to this
//! process's monotonic clock at the middle of the round trip, and later readings advance
//! the anchor by the monotonic clock (which a stepped wall clock does not move). The anchor
//! is renewed every [`RESYNC`]; its error is half a round trip plus the monotonic clock's
//! drift since the last renewal (microseconds).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Executor, Postgres};

/// How long an anchor is trusted before the database is asked again.
pub(crate) const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub(crate) struct DbClock {
    anchor: Mutex<Option<(DateTime<Utc>, Instant)>>,
}

fn advance(t: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    t + TimeDelta::from_std(by).unwrap_or(TimeDelta::zero())
}

impl DbClock {
    fn anchor(&self) -> Option<(DateTime<Utc>, Instant)> {
        *self.anchor.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The database's time now. `local` answers only when the database has never been
    /// reached by this process (a store call made then fails anyway).
    ///
    /// `db` reads the clock when the anchor is stale: the pool, or the caller's own
    /// connection inside a transaction (a second connection could wait for a pool that the
    /// transaction holds the last of).
    pub(crate) async fn now<'c, E>(&self, db: E, local: DateTime<Utc>) -> DateTime<Utc>
    where
        E: Executor<'c, Database = Postgres>,
    {
        if let Some((db, at)) = self.anchor() {
            if at.elapsed() < RESYNC {
                return advance(db, at.elapsed());
            }
        }
        let sent = Instant::now();
        match sqlx::query_scalar::<_, DateTime<Utc>>("SELECT clock_timestamp()")
            .fetch_one(db)
            .await
        {
            Ok(db) => {
                let at = sent + sent.elapsed() / 2;
                *self.anchor.lock().unwrap_or_else(|e| e.into_inner()) = Some((db, at));
                advance(db, at.elapsed())
            }
            Err(e) => match self.anchor() {
                Some((db, at)) => {
                    tracing::debug!(error = %e, "could not renew the database clock; extrapolating");
                    advance(db, at.elapsed())
                }
                None => {
                    tracing::warn!(error = %e, "could not read the database clock; using this machine's");
                    local
                }
            },
        }
    }
}
