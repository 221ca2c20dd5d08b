//! The worker runtime: producers claim, executors run, the completer records, the heartbeat
//! keeps leases, maintenance services rescue, schedule and prune.
//!
//! [`Worker`] is generic over the store only at the edge; inside, the store is an
//! `Arc<dyn Store>` and job types are erased by the registry. `shared.rs` holds what every
//! runtime task shares, `handle.rs` the running worker and its shutdown.

mod builder;
mod completer;
mod controls;
mod drain;
pub(crate) mod executor;
mod handle;
mod heartbeat;
mod inflight;
mod keeper;
mod pacing;
mod poller;
mod producer;
mod queue;
mod registry;
mod shared;
mod watchdog;

use std::sync::Arc;

use errand_core::Store;
use tokio::sync::{mpsc, watch, Semaphore};

pub use builder::WorkerBuilder;
pub use drain::DrainReport;
pub use handle::{ShutdownReport, WorkerHandle};
pub use queue::QueueOptions;

use crate::maintenance;
pub(crate) use registry::Registry;
pub(crate) use shared::{panic_message, Config, ErrorBackoff, Pending, QueueConfig, Shared};

/// Runs registered jobs from its queues until shut down. Build one with
/// [`Worker::builder`].
///
/// ```no_run
/// # use errand::{Worker, SqliteStore, Job, JobContext, JobError, Outcome};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct SendEmail { to: String }
/// # impl Job for SendEmail {
/// #     const KIND: &'static str = "send_email";
/// #     type State = ();
/// #     async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) }
/// # }
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteStore::open("errand.db").await?;
/// Worker::builder(store, ())
///     .register::<SendEmail>()
///     .queue("default", 10)
///     .build()?
///     .run_until(async { tokio::signal::ctrl_c().await.ok(); })
///     .await?;
/// # Ok(()) }
/// ```
pub struct Worker<S> {
    store: Arc<S>,
    shared: Arc<Shared>,
    queues: Vec<QueueConfig>,
    completer_rx: mpsc::Receiver<completer::Msg>,
}

impl<S> std::fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.shared.worker_id)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Worker<S> {
    /// Starts building a worker on `store`; `state` is handed to every job (see
    /// [`crate::Job::State`]).
    pub fn builder<St: Clone + Send + Sync + 'static>(store: S, state: St) -> WorkerBuilder<S, St> {
        WorkerBuilder::new(store, state)
    }

    /// This worker's id, recorded as `attempted_by` on the jobs it claims.
    pub fn id(&self) -> &str {
        &self.shared.worker_id
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, shared.
    pub(crate) fn shared_store(&self) -> Arc<S> {
        self.store.clone()
    }

    /// Starts the runtime on the current tokio runtime and returns a handle to stop it.
    pub fn start(self) -> WorkerHandle {
        let shared = self.shared;
        shared.store.listen();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (final_tx, final_rx) = watch::channel(false);
        let mut producers = Vec::new();
        let mut sems = Vec::new();
        for q in &self.queues {
            let sem = Arc::new(Semaphore::new(q.concurrency));
            sems.push((sem.clone(), q.concurrency));
            producers.push(tokio::spawn(producer::run(
                shared.clone(),
                q.clone(),
                sem,
                stop_rx.clone(),
            )));
        }
        let poller = tokio::spawn(poller::run(
            shared.clone(),
            self.queues.clone(),
            stop_rx.clone(),
        ));
        let me = maintenance::Identity {
            id: shared.worker_id.clone(),
            host: builder::hostname(),
            queues: self
                .queues
                .iter()
                .map(|q| errand_core::WorkerQueue {
                    name: q.name.clone(),
                    concurrency: u32::try_from(q.concurrency).unwrap_or(u32::MAX),
                })
                .collect(),
        };
        let keeper = keeper::start(shared.clone(), me, self.completer_rx, final_rx);
        let watcher = tokio::spawn(controls::run(shared.clone(), stop_rx.clone()));
        let mut services = maintenance::spawn_all(
            shared.store.clone(),
            &shared.config.maintenance,
            &self
                .queues
                .iter()
                .map(|q| q.name.clone())
                .collect::<Vec<_>>(),
            shared.control(stop_rx),
        );
        services.push(watcher);
        services.push(poller);
        tracing::info!(worker = %shared.worker_id, queues = ?self.queues.iter().map(|q| (&q.name, q.concurrency)).collect::<Vec<_>>(),
            kinds = ?shared.registry.kinds().collect::<Vec<_>>(), "errand worker started");
        WorkerHandle {
            shared,
            stop_tx,
            final_tx,
            producers,
            services,
            keeper,
            sems,
        }
    }

    /// Runs until `signal` completes (for example `tokio::signal::ctrl_c()`), then shuts down
    /// gracefully: stops claiming, lets running jobs finish within the grace period, and
    /// returns the rest to `available` without charging an attempt.
    ///
    /// Fails with [`WorkerError::StoreLost`](crate::WorkerError::StoreLost), after the same
    /// shutdown, when the store is gone from under the worker (a SQLite file deleted,
    /// replaced or truncated while open): running on would lose every write.
    pub async fn run_until<F: std::future::Future>(
        self,
        signal: F,
    ) -> Result<ShutdownReport, crate::WorkerError> {
        let handle = self.start();
        let lost = tokio::select! {
            _ = signal => None,
            reason = handle.failed() => Some(reason),
        };
        let report = handle.shutdown().await;
        match lost {
            Some(reason) => Err(crate::WorkerError::StoreLost { reason, report }),
            None => Ok(report),
        }
    }
}
