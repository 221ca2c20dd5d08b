//! The elector: takes or renews this worker's claim to lead the store's maintenance.
//!
//! One worker per store holds the lease [`MAINTENANCE_LEADER`] and runs the services that
//! need one runner (scheduler, rescuer, pruner, stats gauges); the others keep trying every
//! third of a lease, so a leader that dies is replaced within 1⅓ leases (its lease ends, the
//! next try takes it), and one that shuts down resigns so the next try takes it at once.
//! A leader that cannot renew (a store error, or a renewal slower than a third of the
//! lease) steps down at once rather than act on a lease it may have lost. Two leaders can
//! overlap only briefly (a frozen leader waking after its lease ended, until its next try):
//! every pass is safe to run from several processes, so that costs queries, not correctness.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use errand_core::{Store, StoreError, MAINTENANCE_LEADER};
use tokio::sync::watch;

use super::Service;
use crate::clock::Clock;

pub(crate) struct Elector {
    store: Arc<dyn Store>,
    holder: String,
    lease: Duration,
    clock: Clock,
    leading: Arc<watch::Sender<bool>>,
}

impl Elector {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        holder: String,
        lease: Duration,
        leading: Arc<watch::Sender<bool>>,
    ) -> Self {
        Elector {
            store,
            holder,
            lease,
            clock: Clock::default(),
            leading,
        }
    }

    /// Reads the time from `clock` (the worker's).
    pub(crate) fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Tells the services only when leadership changes (a renewal must not disturb their
    /// timers).
    fn set(&self, leading: bool) {
        let mut was = leading;
        self.leading.send_if_modified(|now| {
            was = std::mem::replace(now, leading);
            was != leading
        });
        match (was, leading) {
            (false, true) => {
                tracing::info!(worker = %self.holder, "this worker leads the store's maintenance")
            }
            (true, false) => {
                tracing::warn!(worker = %self.holder, "this worker no longer leads the store's maintenance")
            }
            _ => {}
        }
    }
}

#[async_trait]
impl Service for Elector {
    fn name(&self) -> &'static str {
        "elector"
    }

    fn interval(&self) -> Duration {
        self.lease / 3
    }

    fn starts_at_once(&self) -> bool {
        true
    }

    async fn run_once(&self) -> Result<Option<Duration>, StoreError> {
        let attempt = async {
            let now = self.clock.now(&*self.store).await;
            self.store
                .lead(MAINTENANCE_LEADER, &self.holder, now, self.lease)
                .await
        };
        match tokio::time::timeout(self.interval(), attempt).await {
            Ok(Ok(leading)) => {
                self.set(leading);
                Ok(None)
            }
            Ok(Err(e)) => {
                self.set(false);
                Err(e)
            }
            Err(_) => {
                self.set(false);
                tracing::warn!(
                    worker = %self.holder,
                    "taking the maintenance lease took longer than a third of it; will retry"
                );
                Ok(None)
            }
        }
    }

    async fn stopped(&self) {
        if self.leading.send_replace(false) {
            match self.store.resign(MAINTENANCE_LEADER, &self.holder).await {
                Ok(()) => {
                    tracing::info!(worker = %self.holder, "resigned the store's maintenance lease")
                }
                Err(e) => tracing::warn!(error = %e,
                    "could not resign the maintenance lease: another worker takes it when it ends"),
            }
        }
    }
}
