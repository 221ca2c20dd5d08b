//! The presence heartbeat: this worker's record in the store's worker registry, replaced
//! every `presence_interval` with how many jobs it holds, removed when it stops. The leader
//! also forgets workers silent for [`FORGET_AFTER`] (killed without stopping), so dead
//! ones age out. Runs on the keeper thread beside the elector, so a worker whose jobs hold
//! the application's runtime still reports itself alive (it is: its leases are renewed).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errand_core::{Store, StoreError, WorkerQueue, WorkerRecord};
use tokio::sync::watch;

use super::Service;
use crate::clock::Clock;

/// A worker silent this long is removed from the registry by the leader.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// What this worker reports about itself that does not change.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) queues: Vec<WorkerQueue>,
}

pub(crate) struct Presence {
    store: Arc<dyn Store>,
    me: Identity,
    interval: Duration,
    clock: Clock,
    running: Arc<dyn Fn() -> u32 + Send + Sync>,
    leading: Arc<watch::Sender<bool>>,
    started: OnceLock<DateTime<Utc>>,
}

impl Presence {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        me: Identity,
        interval: Duration,
        running: Arc<dyn Fn() -> u32 + Send + Sync>,
        leading: Arc<watch::Sender<bool>>,
    ) -> Self {
        Presence {
            store,
            me,
            interval,
            clock: Clock::default(),
            running,
            leading,
            started: OnceLock::new(),
        }
    }

    /// Reads the time from `clock` (the worker's).
    pub(crate) fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

#[async_trait]
impl Service for Presence {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn starts_at_once(&self) -> bool {
        true
    }

    async fn run_once(&self) -> Result<Option<Duration>, StoreError> {
        let now = self.clock.now(&*self.store).await;
        let started = *self.started.get_or_init(|| now);
        let record = WorkerRecord::new(
            self.me.id.clone(),
            self.me.host.clone(),
            std::process::id(),
            env!("CARGO_PKG_VERSION"),
            self.me.queues.clone(),
            started,
            now,
            (self.running)(),
            u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
        );
        self.store.register_worker(&record).await?;
        if *self.leading.borrow() {
            let cutoff = now - chrono::TimeDelta::seconds(FORGET_AFTER.as_secs() as i64);
            let gone = self.store.forget_workers(cutoff).await?;
            if gone > 0 {
                tracing::info!(workers = gone, "forgot workers silent for an hour");
            }
        }
        Ok(None)
    }

    async fn stopped(&self) {
        if let Err(e) = self.store.deregister_worker(&self.me.id).await {
            tracing::warn!(error = %e, "could not remove this worker from the registry: \
                the leader forgets it after an hour of silence");
        }
    }
}
