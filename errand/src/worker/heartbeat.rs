//! Keeps this worker's leases alive: every `lease / 3` it extends all of them in one store
//! call, and stops jobs whose lease the store no longer grants (cancelled by an operator,
//! or rescued after this worker was cut off for too long).

use std::collections::HashSet;
use std::sync::Arc;

use errand_core::Store;
use tokio::sync::watch;

use super::Shared;

/// Runs on the keeper thread, writing through `store` (see `keeper`).
pub(crate) async fn run(
    shared: Arc<Shared>,
    store: Arc<dyn Store>,
    mut stop: watch::Receiver<bool>,
) {
    let every = shared.config.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        beat(&shared, &*store).await;
    }
}

pub(crate) async fn beat(shared: &Shared, store: &dyn Store) {
    let leases = shared.inflight.leases();
    if leases.is_empty() {
        return;
    }
    let refs: Vec<_> = leases.iter().map(|h| h.lease).collect();
    let until = errand_core::later(shared.config.clock.now(store).await, shared.config.lease);
    match store.extend_leases(&refs, until).await {
        Ok(held) => {
            let held: HashSet<_> = held.into_iter().collect();
            let lost: Vec<_> = leases
                .into_iter()
                .filter(|h| !held.contains(&h.lease.id))
                .collect();
            let stopped = shared.inflight.lost(&lost);
            if !stopped.is_empty() {
                tracing::warn!(jobs = ?stopped, "stopping jobs whose lease is gone (cancelled, or rescued after this worker stopped heartbeating)");
            }
        }
        Err(e) => {
            if !shared.check_lost(&e) {
                tracing::warn!(error = %e, jobs = leases.len(), "could not extend leases");
            }
        }
    }
}
