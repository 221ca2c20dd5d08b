//! The worker runtime: producers claim, executors run, the completer records, the heartbeat
//! keeps leases, maintenance services rescue, schedule and prune.
//!
//! [`Worker`] is generic over the store only at the edge; inside, the store is an
//! `Arc<dyn Store>` and job types are erased by the registry.

mod builder;
mod completer;
mod drain;
pub(crate) mod executor;
mod heartbeat;
mod inflight;
mod keeper;
mod pacing;
mod producer;
mod registry;
mod watchdog;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use errand_core::{Backoff, Finish, Store};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

pub use builder::WorkerBuilder;
pub use drain::DrainReport;

use crate::clock::Clock;
use crate::maintenance;
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
    /// A poll of a job's future running this long is logged as a stall (watchdog).
    pub(crate) stall_warning: Duration,
    /// Where the runtime reads the time (see `clock`).
    pub(crate) clock: Clock,
    pub(crate) maintenance: maintenance::Settings,
}

/// An outcome on its way to the store.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) finish: Finish,
    pub(crate) queue: String,
    pub(crate) kind: String,
    pub(crate) duration: Duration,
}

/// What every runtime task shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Registry,
    pub(crate) config: Config,
    pub(crate) worker_id: String,
    pub(crate) inflight: InFlight,
    completer: mpsc::Sender<completer::Msg>,
    /// Outcomes the completer has dealt with (written, found stale or refused): shutdown
    /// waits for outcomes while this moves.
    pub(crate) outcomes_written: AtomicU64,
    /// Set when the store is gone ([`StoreError::Lost`]): the worker cannot go on.
    pub(crate) lost: watch::Sender<Option<String>>,
    queues: HashMap<String, Arc<pacing::QueueState>>,
}

impl Shared {
    /// Hands an outcome to the completer, waiting while its backlog is full.
    pub(crate) async fn record(&self, p: Pending) {
        // The completer outlives every executor, so the send only fails after a forced stop.
        let _ = self.completer.send(completer::Msg::Outcome(p)).await;
    }

    /// Notes a store error: one that says the store is gone stops the worker (see
    /// [`Worker::run_until`]). Returns whether it was such an error.
    pub(crate) fn check_lost(&self, e: &errand_core::StoreError) -> bool {
        if !e.is_lost() {
            return false;
        }
        self.lost.send_if_modified(|lost| {
            if lost.is_some() {
                return false;
            }
            tracing::error!(error = %e, "the store is gone: this worker stops");
            *lost = Some(e.to_string());
            true
        });
        true
    }

    /// The store's time (the database's on Postgres).
    pub(crate) async fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.config.clock.now(&*self.store).await
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
        let keeper = keeper::start(shared.clone(), self.completer_rx, final_rx);
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

/// A running worker; [`WorkerHandle::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct WorkerHandle {
    shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    final_tx: watch::Sender<bool>,
    producers: Vec<JoinHandle<()>>,
    services: Vec<JoinHandle<()>>,
    keeper: keeper::Keeper,
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
    /// Resolves when the worker cannot go on because its store is gone (a SQLite file
    /// deleted, replaced or truncated while open), with the reason; pending otherwise. Shut
    /// the worker down then: [`Worker::run_until`] does.
    pub async fn failed(&self) -> String {
        let mut rx = self.shared.lost.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

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
            keeper,
            sems,
        } = self;
        // No buffered job starts from here on; their leases are released below.
        for q in shared.queues.values() {
            q.stop();
        }
        let _ = stop_tx.send(true);
        // A producer ends at its next await. When the store is gone, one may be stuck in a
        // store call (opening a connection on a truncated file waits for the busy timeout):
        // it is cut short, since nothing it claims can be recorded anyway.
        let lost = shared.lost.borrow().is_some();
        for mut p in producers {
            if lost {
                if tokio::time::timeout(SERVICE_STOP, &mut p).await.is_err() {
                    p.abort();
                }
            } else {
                let _ = p.await;
            }
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
                match shared.store.release(&unfinished, shared.now().await).await {
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
        flush_outcomes(&shared).await;
        let _ = final_tx.send(true);
        keeper.join().await;
        // A maintenance pass stops at its next await; one stuck in a store call (a database
        // that does not answer) is cut short: each pass is one statement or transaction.
        for mut s in services {
            if tokio::time::timeout(SERVICE_STOP, &mut s).await.is_err() {
                s.abort();
            }
        }
        tracing::info!(worker = %shared.worker_id, released = report.released, "errand worker stopped");
        report
    }
}

/// How long shutdown waits for a maintenance service's pass under way before aborting it.
const SERVICE_STOP: Duration = Duration::from_secs(2);

/// How long shutdown waits for the completer to deal with another outcome before it gives
/// up on the rest (the store is unreachable): their jobs are rescued after their lease.
const FLUSH_STALL: Duration = Duration::from_secs(10);

/// Waits until every outcome handed to the completer is written. Outcomes recorded in
/// memory are not abandoned while the store takes them, however many there are: shutdown
/// gives up only when no outcome was written for [`FLUSH_STALL`].
async fn flush_outcomes(shared: &Shared) {
    let (tx, mut rx) = oneshot::channel();
    let mut seen = shared.outcomes_written.load(Ordering::Relaxed);
    let mut send = std::pin::pin!(shared.completer.send(completer::Msg::Flush(tx)));
    let mut sent = false;
    loop {
        let waited = if sent {
            tokio::time::timeout(FLUSH_STALL, &mut rx).await.map(|_| ())
        } else {
            match tokio::time::timeout(FLUSH_STALL, &mut send).await {
                Ok(Ok(())) => {
                    sent = true;
                    continue;
                }
                // The completer is gone: nothing more can be written.
                Ok(Err(_)) => return,
                Err(e) => Err(e),
            }
        };
        if waited.is_ok() {
            return;
        }
        let now = shared.outcomes_written.load(Ordering::Relaxed);
        if now == seen {
            tracing::warn!(
                in_flight = shared.inflight.len(),
                "no job outcome could be recorded for {} s during shutdown: giving up; those \
                 jobs will be rescued after their lease",
                FLUSH_STALL.as_secs()
            );
            return;
        }
        tracing::info!(
            recorded = now - seen,
            "shutdown: still recording job outcomes"
        );
        seen = now;
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
