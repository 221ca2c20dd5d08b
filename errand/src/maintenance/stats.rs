//! The stats reporter: publishes job counts per queue and non-final state as `errand_jobs`
//! gauges. Final states are left out: they only grow until pruned, and counting them would
//! scan the table's finished jobs every pass.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use errand_core::{JobState, Store, StoreError};

use super::Service;

const OPEN: [JobState; 4] = [
    JobState::Scheduled,
    JobState::Available,
    JobState::Running,
    JobState::Retryable,
];
use crate::telemetry;

pub(crate) struct StatsReporter {
    store: Arc<dyn Store>,
    interval: Duration,
    /// Queues seen before, so a state that dropped to zero is reported as zero.
    seen: Mutex<HashSet<String>>,
}

impl StatsReporter {
    /// Reports `queues` (the worker's own) always, and any other queue once seen.
    pub(crate) fn new(store: Arc<dyn Store>, interval: Duration, queues: &[String]) -> Self {
        StatsReporter {
            store,
            interval,
            seen: Mutex::new(queues.iter().cloned().collect()),
        }
    }
}

#[async_trait]
impl Service for StatsReporter {
    fn name(&self) -> &'static str {
        "stats"
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run_once(&self) -> Result<Option<Duration>, StoreError> {
        let counts = self.store.stats(&OPEN).await?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(counts.iter().map(|c| c.queue.clone()));
        for queue in seen.iter() {
            for state in OPEN {
                let n = counts
                    .iter()
                    .find(|c| &c.queue == queue && c.state == state)
                    .map_or(0, |c| c.count);
                telemetry::jobs_in_state(queue, state, n);
            }
        }
        Ok(None)
    }
}
