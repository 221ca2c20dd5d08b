//! The reclaimer: on the leader, every [`INTERVAL`], lets the store reclaim dead row
//! versions its database would leave for too long (`Store::reclaim`: on Postgres a `VACUUM`
//! of the jobs table past [`DEAD_ROWS`]; nothing on the other stores).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use errand_core::{Store, StoreError};

use super::Service;

/// Between passes: each is one read of the table's statistics unless it vacuums.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);
/// Dead row versions a store may hold before a pass reclaims them (12 s of a queue running
/// 800 jobs/s).
pub(crate) const DEAD_ROWS: u64 = 20_000;

pub(crate) struct Reclaimer {
    store: Arc<dyn Store>,
    interval: Duration,
}

impl Reclaimer {
    pub(crate) fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        Reclaimer { store, interval }
    }
}

#[async_trait]
impl Service for Reclaimer {
    fn name(&self) -> &'static str {
        "reclaimer"
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run_once(&self) -> Result<Option<Duration>, StoreError> {
        if self.store.reclaim(DEAD_ROWS).await? {
            tracing::debug!("reclaimed dead rows");
        }
        Ok(None)
    }
}
