//! The tally: on the leader, every [`INTERVAL`], adds the jobs that finished since the
//! last tally to the store's per-minute counts (`Store::tally_finished`), which dashboards
//! chart. It stops [`LAG`] short of now, so outcomes written late (batched by completers)
//! land before their moment is tallied.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use errand_core::{earlier, Store, StoreError};

use super::Service;
use crate::clock::Clock;

/// Between tallies: the chart's resolution is a minute, and each tally is a handful of
/// statements, so twice a minute keeps the leader's idle cost low.
pub(crate) const INTERVAL: Duration = Duration::from_secs(30);
/// How far behind now each tally stops.
pub(crate) const LAG: Duration = Duration::from_secs(10);
/// How far back a first tally (or one after a long pause) reaches.
pub(crate) const WINDOW: Duration = Duration::from_secs(600);

pub(crate) struct Tally {
    store: Arc<dyn Store>,
    interval: Duration,
    clock: Clock,
}

impl Tally {
    pub(crate) fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        Tally {
            store,
            interval,
            clock: Clock::default(),
        }
    }

    /// Reads the time from `clock` (the worker's).
    pub(crate) fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

#[async_trait]
impl Service for Tally {
    fn name(&self) -> &'static str {
        "tally"
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run_once(&self) -> Result<Option<Duration>, StoreError> {
        let now = self.clock.now(&*self.store).await;
        self.store.tally_finished(earlier(now, LAG), WINDOW).await?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use chrono::Utc;
    use errand_core::{ClaimRequest, Finish, FinishAction, JobState, NewJob};

    /// A job finished a minute ago is tallied; one finished just now waits for the next
    /// tally after the lag.
    #[tokio::test]
    async fn tallies_what_finished_up_to_the_lag() {
        let store = MemoryStore::new();
        let now = Utc::now();
        for ago in [60, 1] {
            let at = now - chrono::Duration::seconds(ago);
            let job = NewJob {
                kind: "k".into(),
                queue: "q".into(),
                args: "{}".into(),
                priority: 0,
                max_attempts: 3,
                run_at: at,
                tags: vec![],
                unique_key: None,
                unique_states: Default::default(),
                unique_for_ms: None,
                backoff: None,
                timeout_ms: None,
                partition_key: None,
            };
            store.insert(vec![job], at).await.unwrap();
            let req = ClaimRequest {
                queue: "q".into(),
                limit: 1,
                worker_id: "w".into(),
                now: at,
                lease: Duration::from_secs(30),
                held: None,
            };
            let row = store.claim(&req).await.unwrap().pop().unwrap();
            let f = Finish {
                lease: row.lease_ref(),
                at,
                action: FinishAction::Complete,
            };
            store.finish(&[f]).await.unwrap();
        }
        Tally::new(Arc::new(store.clone()), Duration::from_secs(1))
            .run_once()
            .await
            .unwrap();
        let counts = store
            .finished_per_minute(now - chrono::Duration::hours(1))
            .await
            .unwrap();
        assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), 1, "{counts:?}");
        assert_eq!(counts[0].state, JobState::Completed);
    }
}
