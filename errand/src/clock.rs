//! Where the runtime and the client get the time they hand to the store.
//!
//! Every timestamp passed to a store comes from [`Store::now`]: the caller's clock on SQLite
//! and in memory, the database's clock on Postgres (see `errand-postgres`'s clock module),
//! so leases and schedules are judged by one clock across machines.

use std::sync::OnceLock;

use chrono::{DateTime, TimeDelta, Utc};
use errand_core::Store;

/// This process's clock, as the runtime reads it. Tests may set it wrong on purpose
/// ([`crate::WorkerBuilder::clock_skew`]) to show that a wrong clock does not matter where
/// the store keeps time, or make it follow tokio's clock
/// ([`crate::WorkerBuilder::tokio_clock`]) so a paused test clock moves it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock {
    skew: TimeDelta,
    tokio: bool,
}

/// One wall time and the monotonic instant it was read at, shared by every tokio clock of
/// the process so that they agree.
fn anchor() -> (DateTime<Utc>, std::time::Instant) {
    static ANCHOR: OnceLock<(DateTime<Utc>, std::time::Instant)> = OnceLock::new();
    *ANCHOR.get_or_init(|| (Utc::now(), std::time::Instant::now()))
}

/// Wall time as tokio's clock tells it: the anchor plus tokio's time since. With the runtime
/// running normally that is the wall time (monotonic); with it paused (`start_paused`,
/// `tokio::time::pause`) it moves only as tokio's time is advanced.
pub(crate) fn tokio_now() -> DateTime<Utc> {
    let (wall, at) = anchor();
    let now = tokio::time::Instant::now().into_std();
    let since = now.saturating_duration_since(at);
    let before = at.saturating_duration_since(now);
    let wall = TimeDelta::from_std(since)
        .ok()
        .and_then(|d| wall.checked_add_signed(d))
        .unwrap_or(wall);
    TimeDelta::from_std(before)
        .ok()
        .and_then(|d| wall.checked_sub_signed(d))
        .unwrap_or(wall)
}

impl Clock {
    pub(crate) fn skewed(skew: TimeDelta) -> Self {
        Clock { skew, tokio: false }
    }

    /// Follows tokio's clock (see [`tokio_now`]).
    pub(crate) fn tokio() -> Self {
        Clock {
            skew: TimeDelta::zero(),
            tokio: true,
        }
    }

    /// Whether it follows tokio's clock.
    pub(crate) fn follows_tokio(&self) -> bool {
        self.tokio
    }

    /// This machine's time (plus the test skew), or tokio's.
    pub(crate) fn local(&self) -> DateTime<Utc> {
        let now = if self.tokio { tokio_now() } else { Utc::now() };
        now.checked_add_signed(self.skew).unwrap_or(now)
    }

    /// The store's time: what every timestamp handed to `store` is taken from.
    pub(crate) async fn now(&self, store: &(impl Store + ?Sized)) -> DateTime<Utc> {
        store.now(self.local()).await
    }
}
