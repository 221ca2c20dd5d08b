//! Where the runtime and the client get the time they hand to the store.
//!
//! Every timestamp passed to a store comes from [`Store::now`]: the caller's clock on SQLite
//! and in memory, the database's clock on Postgres (see `errand-postgres`'s clock module),
//! so leases and schedules are judged by one clock across machines.

use chrono::{DateTime, TimeDelta, Utc};
use errand_core::Store;

/// This process's clock, as the runtime reads it. Tests may set it wrong on purpose
/// ([`crate::WorkerBuilder::clock_skew`]) to show that a wrong clock does not matter where
/// the store keeps time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock {
    skew: TimeDelta,
}

impl Clock {
    pub(crate) fn skewed(skew: TimeDelta) -> Self {
        Clock { skew }
    }

    /// This machine's time (plus the test skew).
    pub(crate) fn local(&self) -> DateTime<Utc> {
        Utc::now()
            .checked_add_signed(self.skew)
            .unwrap_or_else(Utc::now)
    }

    /// The store's time: what every timestamp handed to `store` is taken from.
    pub(crate) async fn now(&self, store: &(impl Store + ?Sized)) -> DateTime<Utc> {
        store.now(self.local()).await
    }
}
