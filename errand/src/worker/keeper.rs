//! The keeper thread: the heartbeat, the completer, the watchdog, the maintenance elector
//! and the presence heartbeat (worker registry) run on an OS thread of their own with a
//! single-threaded tokio runtime, so job code that holds the application's runtime threads
//! (a blocking call inside async code) cannot starve them. Were they on the application's runtime, four jobs sleeping on a
//! two-thread runtime would stop heartbeats (their leases run out and other workers rescue
//! jobs that are still running), stop outcomes being written and stop the timeouts from
//! firing. The elector is here for the same reason as the heartbeat — a leader's lease is
//! renewed whatever its jobs do — and for one more: on SQLite a store call holds the
//! file's write turn until its task is polled again, and a task on a starved runtime is
//! not, so every other writer (this keeper's heartbeat included) would wait for the jobs.
//!
//! Its store calls go through [`Store::detached`](errand_core::Store::detached): a store
//! whose connections belong to the runtime that opened them (Postgres) gives the keeper a
//! small pool of its own, opened on the keeper's runtime.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::{completer, heartbeat, watchdog, Shared};
use crate::maintenance;

/// The running keeper thread.
#[derive(Debug)]
pub(crate) struct Keeper {
    thread: Option<std::thread::JoinHandle<()>>,
    done: oneshot::Receiver<()>,
}

/// Starts the keeper thread. It runs until `stop` turns true and the completer has written
/// what it was given.
pub(crate) fn start(
    shared: Arc<Shared>,
    me: maintenance::Identity,
    outcomes: mpsc::Receiver<completer::Msg>,
    stop: watch::Receiver<bool>,
) -> Keeper {
    let (done_tx, done) = oneshot::channel();
    if shared.config.clock.follows_tokio() {
        // A test on tokio's clock (`WorkerBuilder::tokio_clock`): the keeper must see the
        // same, possibly paused, clock, which only the application's runtime has.
        tokio::spawn(async move {
            keep(shared, me, outcomes, stop).await;
            let _ = done_tx.send(());
        });
        return Keeper { thread: None, done };
    }
    let thread = std::thread::Builder::new()
        .name("errand-keeper".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("errand-keeper")
                .build()
                .expect("errand: cannot start the keeper thread's tokio runtime");
            rt.block_on(keep(shared, me, outcomes, stop));
            drop(rt);
            let _ = done_tx.send(());
        })
        .expect("errand: cannot spawn the keeper thread");
    Keeper {
        thread: Some(thread),
        done,
    }
}

/// The heartbeat, the completer, the watchdog, the elector and the presence heartbeat,
/// until `stop`.
async fn keep(
    shared: Arc<Shared>,
    me: maintenance::Identity,
    outcomes: mpsc::Receiver<completer::Msg>,
    stop: watch::Receiver<bool>,
) {
    // Opened here, so its connections belong to this runtime.
    let store = shared
        .store
        .detached()
        .unwrap_or_else(|| shared.store.clone());
    let completer = tokio::spawn(completer::run(shared.clone(), store.clone(), outcomes));
    // On tokio's clock the keeper shares the jobs' runtime, where it could not see a stall
    // (the stalled job holds the thread it would run on): no watchdog then.
    let watchdog = (!shared.config.clock.follows_tokio())
        .then(|| tokio::spawn(watchdog::run(shared.clone(), stop.clone())));
    let m = &shared.config.maintenance;
    let elector = maintenance::spawn(
        maintenance::Elector::new(
            store.clone(),
            shared.worker_id.clone(),
            m.leader_lease,
            shared.leading.clone(),
        )
        .clock(m.clock),
        shared.control(stop.clone()),
    );
    let held = shared.clone();
    let presence = maintenance::spawn(
        maintenance::Presence::new(
            store.clone(),
            me,
            m.presence_interval,
            Arc::new(move || u32::try_from(held.inflight.len()).unwrap_or(u32::MAX)),
            shared.leading.clone(),
        )
        .clock(m.clock),
        shared.control(stop.clone()),
    );
    heartbeat::run(shared.clone(), store.clone(), stop).await;
    if let Some(watchdog) = watchdog {
        let _ = watchdog.await;
    }
    // They resign and deregister on the way out; a store that does not answer is not
    // waited for.
    for mut service in [elector, presence] {
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut service)
            .await
            .is_err()
        {
            service.abort();
        }
    }
    completer.abort();
    let _ = completer.await;
    drop(store);
}

impl Keeper {
    /// Waits for the thread to end (after `stop` was sent).
    pub(crate) async fn join(mut self) {
        let _ = (&mut self.done).await;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
