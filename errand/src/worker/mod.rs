//! The worker runtime: producers claim, executors run, the completer records, the heartbeat
//! keeps leases, maintenance services rescue, schedule and prune.
//!
//! [`Worker`] is generic over the store only at the edge; inside, the store is an
//! `Arc<dyn Store>` and job types are erased by the registry.

mod builder;
mod completer;
pub(crate) mod executor;
mod heartbeat;
mod inflight;
mod pacing;
mod producer;
mod registry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use errand_core::{Backoff, Finish, Store};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

pub use builder::WorkerBuilder;

use crate::maintenance;
use crate::telemetry::Ended;
use inflight::InFlight;
pub(crate) use registry::Registry;

/// A queue this worker runs, with its concurrency.
#[derive(Debug, Clone)]
pub(crate) struct QueueConfig {
    pub(crate) name: String,
    pub(crate) concurrency: usize,
    /// Claimed jobs that may wait for a slot beyond the running ones.
    pub(crate) prefetch: pacing::Prefetch,
}

/// Runtime settings (see [`WorkerBuilder`] for meanings and defaults).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) fetch_cooldown: Duration,
    pub(crate) grace_period: Duration,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) default_backoff: Backoff,
    pub(crate) completer_linger: Duration,
    pub(crate) completer_batch: usize,
    pub(crate) maintenance: maintenance::Settings,
}

/// An outcome on its way to the store.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) finish: Finish,
    pub(crate) queue: String,
    pub(crate) kind: String,
    pub(crate) ended: Ended,
    pub(crate) duration: Duration,
}

/// What every runtime task shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Registry,
    pub(crate) config: Config,
    pub(crate) worker_id: String,
    pub(crate) inflight: InFlight,
    completer: mpsc::UnboundedSender<completer::Msg>,
    queues: HashMap<String, Arc<pacing::QueueState>>,
}

impl Shared {
    pub(crate) fn record(&self, p: Pending) {
        // The completer outlives every executor, so the send only fails after a forced stop.
        let _ = self.completer.send(completer::Msg::Outcome(p));
    }

    fn queue_state(&self, queue: &str) -> Arc<pacing::QueueState> {
        self.queues.get(queue).cloned().unwrap_or_default()
    }
}

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
    completer_rx: mpsc::UnboundedReceiver<completer::Msg>,
}

impl<S> std::fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.shared.worker_id)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs still running when the grace period ended, stopped and returned to `available`
    /// without an attempt charged.
    pub released: u64,
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
        let completer = tokio::spawn(completer::run(shared.clone(), self.completer_rx));
        let heartbeat = tokio::spawn(heartbeat::run(shared.clone(), final_rx));
        let services = maintenance::spawn_all(
            shared.store.clone(),
            &shared.config.maintenance,
            &self
                .queues
                .iter()
                .map(|q| q.name.clone())
                .collect::<Vec<_>>(),
            stop_rx,
        );
        tracing::info!(worker = %shared.worker_id, queues = ?self.queues.iter().map(|q| (&q.name, q.concurrency)).collect::<Vec<_>>(),
            kinds = ?shared.registry.kinds().collect::<Vec<_>>(), "errand worker started");
        WorkerHandle {
            shared,
            stop_tx,
            final_tx,
            producers,
            services,
            completer,
            heartbeat,
            sems,
        }
    }

    /// Runs until `signal` completes (for example `tokio::signal::ctrl_c()`), then shuts down
    /// gracefully: stops claiming, lets running jobs finish within the grace period, and
    /// returns the rest to `available` without charging an attempt.
    pub async fn run_until<F: std::future::Future>(
        self,
        signal: F,
    ) -> Result<ShutdownReport, crate::WorkerError> {
        let handle = self.start();
        signal.await;
        Ok(handle.shutdown().await)
    }
}

/// A running worker; [`WorkerHandle::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct WorkerHandle {
    shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    final_tx: watch::Sender<bool>,
    producers: Vec<JoinHandle<()>>,
    services: Vec<JoinHandle<()>>,
    completer: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    sems: Vec<(Arc<Semaphore>, usize)>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

impl WorkerHandle {
    /// Jobs this worker holds right now (running, or with an outcome being recorded).
    pub fn in_flight(&self) -> usize {
        self.shared.inflight.len()
    }

    /// Graceful shutdown: stop claiming and maintenance, wait up to the grace period for
    /// running jobs, stop the rest and return them to `available` without charging an
    /// attempt, record every outcome, then stop.
    pub async fn shutdown(self) -> ShutdownReport {
        let WorkerHandle {
            shared,
            stop_tx,
            final_tx,
            producers,
            services,
            completer,
            heartbeat,
            sems,
        } = self;
        // No buffered job starts from here on; their leases are released below.
        for q in shared.queues.values() {
            q.stop();
        }
        let _ = stop_tx.send(true);
        for p in producers {
            let _ = p.await;
        }
        let grace = shared.config.grace_period;
        if !all_idle(&sems, grace).await {
            let n = shared.inflight.abort_running();
            tracing::info!(
                jobs = n,
                grace_ms = grace.as_millis() as u64,
                "grace period over: stopping running jobs and returning them to their queues"
            );
            // Aborted tasks end at their next await; a job that never yields cannot be
            // stopped, and its lease is released anyway (its late outcome will be fenced).
            all_idle(&sems, Duration::from_secs(2)).await;
        }
        let unfinished = shared.inflight.take_unfinished();
        let mut report = ShutdownReport::default();
        if !unfinished.is_empty() {
            let mut backoff = ErrorBackoff::default();
            for _ in 0..5 {
                match shared.store.release(&unfinished, chrono::Utc::now()).await {
                    Ok(n) => {
                        report.released = n;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not release jobs at shutdown; retrying");
                        tokio::time::sleep(backoff.next()).await;
                    }
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        if shared.completer.send(completer::Msg::Flush(tx)).is_ok()
            && tokio::time::timeout(Duration::from_secs(10), rx)
                .await
                .is_err()
        {
            tracing::warn!("outcomes not recorded within 10 s of shutdown: those jobs will be rescued after their lease");
        }
        let _ = final_tx.send(true);
        completer.abort();
        let _ = heartbeat.await;
        for s in services {
            let _ = s.await;
        }
        tracing::info!(worker = %shared.worker_id, released = report.released, "errand worker stopped");
        report
    }
}

/// Waits until every executor has returned its permit, at most `within`.
async fn all_idle(sems: &[(Arc<Semaphore>, usize)], within: Duration) -> bool {
    let wait = async {
        for (sem, n) in sems {
            // Holding every permit means every executor of that queue ended; dropping the
            // permits right away hands them back.
            let _ = sem.acquire_many(*n as u32).await;
        }
    };
    tokio::time::timeout(within, wait).await.is_ok()
}

/// Backoff for retrying store calls after errors: 50 ms doubling to 5 s.
#[derive(Debug)]
pub(crate) struct ErrorBackoff {
    next: Duration,
}

impl Default for ErrorBackoff {
    fn default() -> Self {
        ErrorBackoff {
            next: Duration::from_millis(50),
        }
    }
}

impl ErrorBackoff {
    pub(crate) fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        now
    }
}

/// The text of a panic payload (`&str` or `String`; anything else is named as such).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
