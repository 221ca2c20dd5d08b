//! The pruner: deletes final jobs older than their state's retention, in batches.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use async_trait::async_trait;
use chrono::Utc;
use errand_core::{JobState, Store, StoreError};

use super::{Service, BATCH};

pub(crate) struct Pruner {
    store: Arc<dyn Store>,
    /// Each final state pruned, with its retention.
    retention: Vec<(JobState, Duration)>,
    interval: Duration,
    clock: Clock,
}

impl Pruner {
    /// Reads the time from `clock` (the worker's).
    pub(crate) fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub(crate) fn new(
        store: Arc<dyn Store>,
        retention: Vec<(JobState, Duration)>,
        interval: Duration,
    ) -> Self {
        Pruner {
            clock: Clock::default(),
            store,
            retention,
            interval,
        }
    }
}

#[async_trait]
impl Service for Pruner {
    fn name(&self) -> &'static str {
        "pruner"
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run_once(&self) -> Result<Option<Duration>, StoreError> {
        // The builder bounds retention; saturate anyway rather than panic.
        let now = self.clock.now(&*self.store).await;
        for &(state, keep) in &self.retention {
            let before = chrono::TimeDelta::from_std(keep)
                .ok()
                .and_then(|keep| now.checked_sub_signed(keep))
                .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
            loop {
                let n = self.store.prune(state, before, BATCH).await?;
                if n > 0 {
                    tracing::debug!(pruned = n, %state, "pruned final jobs past retention");
                }
                if n < u64::from(BATCH) {
                    break;
                }
                // Let other writers in between batches.
                tokio::task::yield_now().await;
            }
        }
        Ok(None)
    }
}
