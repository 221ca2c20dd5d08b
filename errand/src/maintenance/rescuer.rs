//! The rescuer: jobs whose worker died (lease expired) go back to `retryable`, or to
//! `discarded` when out of attempts, with the reason in their error history.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use errand_core::{Store, StoreError};

use super::{Service, BATCH};
use crate::clock::Clock;
use crate::telemetry;

pub(crate) struct Rescuer {
    store: Arc<dyn Store>,
    interval: Duration,
    clock: Clock,
}

impl Rescuer {
    /// Reads the time from `clock` (the worker's).
    pub(crate) fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub(crate) fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        Rescuer {
            clock: Clock::default(),
            store,
            interval,
        }
    }
}

#[async_trait]
impl Service for Rescuer {
    fn name(&self) -> &'static str {
        "rescuer"
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
            let r = self.store.rescue_expired(now, BATCH).await?;
            let n = r.retried + r.discarded;
            if n > 0 {
                telemetry::rescued(n);
                // Rescued jobs are retryable now: let the scheduler make them available.
                self.store.signals().notify_scheduled();
                tracing::warn!(
                    retried = r.retried,
                    discarded = r.discarded,
                    "rescued jobs whose worker stopped heartbeating"
                );
            }
            if n < u64::from(BATCH) {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use chrono::Utc;
    use errand_core::{ClaimRequest, JobState, NewJob};

    #[tokio::test]
    async fn rescues_jobs_with_expired_leases() {
        let store = MemoryStore::new();
        let long_ago = Utc::now() - chrono::Duration::hours(1);
        let job = NewJob {
            kind: "k".into(),
            queue: "q".into(),
            args: "{}".into(),
            priority: 0,
            max_attempts: 3,
            run_at: long_ago,
            tags: vec![],
            unique_key: None,
            unique_states: Default::default(),
            unique_for_ms: None,
            backoff: None,
            timeout_ms: None,
            partition_key: None,
        };
        let id = store.insert(vec![job], long_ago).await.unwrap()[0].id;
        // A worker claimed it an hour ago with a 30 s lease and vanished.
        store
            .claim(&ClaimRequest {
                queue: "q".into(),
                limit: 1,
                worker_id: "dead-worker".into(),
                now: long_ago,
                lease: Duration::from_secs(30),
                held: None,
            })
            .await
            .unwrap();
        Rescuer::new(Arc::new(store.clone()), Duration::from_secs(1))
            .run_once()
            .await
            .unwrap();
        let row = store.get(id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Retryable);
        assert!(row.errors[0].message.contains("dead-worker"));
    }
}
