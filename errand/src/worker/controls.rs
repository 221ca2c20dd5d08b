//! The queue watcher: keeps each of this worker's queues in step with the store's queue
//! records. When a queue is paused it starts nothing more: its producer stops claiming, and
//! the jobs it had claimed ahead (prefetched, not started) go back to the queue unstarted;
//! running jobs finish. When it is resumed, claiming restarts at once.
//!
//! It reads the records when a pause or resume is signalled (in this process at once; from
//! other processes through Postgres' `NOTIFY`, or SQLite's poll noticing a changed record),
//! and otherwise polls: every second on a store that does neither, every 30 s as a fallback.

use std::sync::Arc;
use std::time::Duration;

use errand_core::QueueRecord;
use tokio::sync::watch;

use super::Shared;

/// Polling when other processes' changes are not heard (SQLite).
const POLL: Duration = Duration::from_secs(1);
/// Polling as a fallback when they are (Postgres `LISTEN`, the in-memory store).
const POLL_HEARD: Duration = Duration::from_secs(30);

pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut changed = shared.store.signals().controls();
    // The poller's statement reports record changes on stores that cannot hear them.
    let every = if shared.store.hears_other_processes() || shared.store.poll_reports_changes() {
        POLL_HEARD
    } else {
        POLL
    };
    loop {
        changed.borrow_and_update();
        match shared.store.queues().await {
            Ok(records) => apply(&shared, &records).await,
            Err(e) => {
                shared.check_lost(&e);
                tracing::warn!(error = %e, "could not read the queues' records; retrying");
            }
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn apply(shared: &Arc<Shared>, records: &[QueueRecord]) {
    for (name, state) in &shared.queues {
        let record = records.iter().find(|r| &r.name == name);
        state.set_limits(&record.map(|r| r.limits()).unwrap_or_default());
        let paused = record.is_some_and(|r| r.paused);
        if !state.set_paused(paused) {
            continue;
        }
        if !paused {
            tracing::info!(queue = %name, "queue resumed");
            state.freed.notify_one();
            continue;
        }
        let leases: Vec<_> = state.take_buffer().iter().map(|r| r.lease_ref()).collect();
        if !leases.is_empty() {
            if let Err(e) = shared.store.release(&leases, shared.now().await).await {
                shared.check_lost(&e);
                // Their leases run out and the rescuer returns them.
                tracing::warn!(queue = %name, error = %e, "could not release the paused queue's claimed jobs");
            }
            shared.inflight.recorded(leases.iter().copied());
        }
        tracing::info!(queue = %name, released = leases.len(), "queue paused: no new job starts; running jobs finish");
    }
}
