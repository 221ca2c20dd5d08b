//! The scheduler: makes due `scheduled` and `retryable` jobs `available` and wakes their
//! queues' producers.
//!
//! It does not poll blindly: each pass learns when the next job is due and sleeps until then,
//! and it is woken early when this process (or, on stores that hear other processes, any
//! process) schedules a job for later. The interval caps the sleep: on stores that cannot
//! hear other processes a job delayed by another process is promoted within one interval;
//! on those that can (Postgres with `LISTEN`), or whose workers' poll reports jobs come due
//! (SQLite, see `Store::poll_reports_changes`), the cap is ten intervals, so an idle worker
//! issues a scheduler query only every 10 s.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use errand_core::{Store, StoreError};

use super::{Service, BATCH};
use crate::clock::Clock;

pub(crate) struct Scheduler {
    store: Arc<dyn Store>,
    interval: Duration,
    clock: Clock,
}

impl Scheduler {
    /// Reads the time from `clock` (the worker's).
    pub(crate) fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub(crate) fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        Scheduler {
            clock: Clock::default(),
            store,
            interval,
        }
    }
}

#[async_trait]
impl Service for Scheduler {
    fn name(&self) -> &'static str {
        "scheduler"
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run_once(&self) -> Result<Option<Duration>, StoreError> {
        loop {
            let now = self.clock.now(&*self.store).await;
            let report = self.store.promote_due(now, BATCH).await?;
            if report.promoted > 0 {
                tracing::debug!(promoted = report.promoted, queues = ?report.queues, "promoted due jobs");
            }
            if report.promoted < u64::from(BATCH) {
                let cap = if self.store.hears_other_processes() || self.store.poll_reports_changes()
                {
                    self.interval * 10
                } else {
                    self.interval
                };
                let until_due = report
                    .next_due
                    .map(|t| (t - now).to_std().unwrap_or_default());
                return Ok(Some(until_due.map_or(cap, |d| d.min(cap))));
            }
        }
    }

    fn wake(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.store.signals().scheduled())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use chrono::Utc;
    use errand_core::{JobState, NewJob};

    #[tokio::test]
    async fn promotes_due_jobs_past_one_batch() {
        let store = MemoryStore::new();
        let past = Utc::now() - chrono::Duration::seconds(5);
        let jobs: Vec<NewJob> = (0..BATCH + 5)
            .map(|_| NewJob {
                kind: "k".into(),
                queue: "q".into(),
                args: "{}".into(),
                priority: 0,
                max_attempts: 1,
                run_at: past,
                tags: vec![],
                unique_key: None,
                unique_states: Default::default(),
                unique_for_ms: None,
                backoff: None,
                timeout_ms: None,
                partition_key: None,
            })
            .collect();
        // Inserted "before" run_at, so they start scheduled.
        store
            .insert(jobs, past - chrono::Duration::seconds(1))
            .await
            .unwrap();
        let svc = Scheduler::new(Arc::new(store.clone()), Duration::from_secs(1));
        svc.run_once().await.unwrap();
        let available = store
            .count(&errand_core::ListFilter::new().state(JobState::Available))
            .await
            .unwrap();
        assert_eq!(available, u64::from(BATCH) + 5);
    }
}
