//! Keeps this worker's leases alive: every `lease / 3` it extends all of them in one store
//! call, and stops jobs whose lease the store no longer grants (cancelled by an operator,
//! or rescued after this worker was cut off for too long).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;

use super::Shared;

pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = shared.config.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        beat(&shared).await;
    }
}

pub(crate) async fn beat(shared: &Shared) {
    let leases = shared.inflight.leases();
    if leases.is_empty() {
        return;
    }
    let until = Utc::now() + chrono::Duration::from_std(shared.config.lease).unwrap_or_default();
    match shared.store.extend_leases(&leases, until).await {
        Ok(held) => {
            let held: HashSet<_> = held.into_iter().collect();
            let lost: Vec<_> = leases
                .iter()
                .map(|l| l.id)
                .filter(|id| !held.contains(id))
                .collect();
            if !lost.is_empty() {
                tracing::warn!(jobs = ?lost, "stopping jobs whose lease is gone (cancelled, or rescued after this worker stopped heartbeating)");
                shared.inflight.lost(&lost);
            }
        }
        Err(e) => tracing::warn!(error = %e, jobs = leases.len(), "could not extend leases"),
    }
}
