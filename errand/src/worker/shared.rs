//! What every runtime task shares: settings, the store, the in-flight set, the outcome
//! channel, per-queue state; and small helpers they all use.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use errand_core::{Backoff, Finish, Store};
use tokio::sync::{mpsc, watch};

use super::inflight::InFlight;
use super::{completer, pacing, Registry};
use crate::clock::Clock;
use crate::maintenance;

/// A queue this worker runs, its [`QueueOptions`](super::QueueOptions) resolved against
/// the worker's settings.
#[derive(Debug, Clone)]
pub(crate) struct QueueConfig {
    pub(crate) name: String,
    pub(crate) concurrency: usize,
    /// Claimed jobs that may wait for a slot beyond the running ones.
    pub(crate) prefetch: pacing::Prefetch,
    pub(crate) poll_interval: Duration,
    pub(crate) fetch_cooldown: Duration,
    /// Payload bytes the buffer may hold.
    pub(crate) prefetch_bytes: usize,
}

/// Runtime settings (see [`WorkerBuilder`](crate::WorkerBuilder) for meanings and defaults).
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
    pub(crate) completer: mpsc::Sender<completer::Msg>,
    /// Outcomes the completer has dealt with (written, found stale or refused): shutdown
    /// waits for outcomes while this moves.
    pub(crate) outcomes_written: AtomicU64,
    /// Set when the store is gone ([`StoreError::Lost`](crate::StoreError::Lost)): the worker cannot go on.
    pub(crate) lost: watch::Sender<Option<String>>,
    pub(crate) queues: HashMap<String, Arc<pacing::QueueState>>,
    /// Whether this worker leads the store's maintenance (see `maintenance::Elector`).
    pub(crate) leading: Arc<watch::Sender<bool>>,
    /// When the poller last polled (producers poll on their own only when it fails).
    pub(crate) poll_health: super::poller::Health,
}

impl Shared {
    /// What this worker's maintenance services are told: stop on `stop`, report a lost
    /// store to the worker, and whether the worker leads (see `maintenance::Control`).
    pub(crate) fn control(
        self: &Arc<Self>,
        stop: watch::Receiver<bool>,
    ) -> crate::maintenance::Control {
        let shared = self.clone();
        crate::maintenance::Control {
            stop,
            on_lost: Arc::new(move |e| shared.check_lost(e)),
            leading: self.leading.clone(),
        }
    }

    /// Hands an outcome to the completer, waiting while its backlog is full.
    pub(crate) async fn record(&self, p: Pending) {
        // The completer outlives every executor, so the send only fails after a forced stop.
        let _ = self.completer.send(completer::Msg::Outcome(p)).await;
    }

    /// Notes a store error: one that says the store is gone stops the worker (see
    /// [`Worker::run_until`](super::Worker::run_until)). Returns whether it was such an error.
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

    pub(crate) fn queue_state(&self, queue: &str) -> Arc<pacing::QueueState> {
        self.queues.get(queue).cloned().unwrap_or_default()
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
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
