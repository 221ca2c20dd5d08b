//! Maintenance services: the scheduler, cron, the rescuer, the pruner and the stats reporter.
//!
//! They share one shape: a struct holding the store and its settings, `run_once` doing one
//! pass (tests call it directly), and [`spawn`] running it on a jittered interval until
//! stopped. A failing pass is logged and retried on the next tick; it never stops the worker.
//! Every worker runs them: each pass is idempotent and safe to run from many processes.

mod cron;
mod pruner;
mod rescuer;
mod scheduler;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use errand_core::{Store, StoreError};

use crate::clock::Clock;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub(crate) use cron::{Cron, CronEntry};
pub(crate) use pruner::Pruner;
pub(crate) use rescuer::Rescuer;
pub(crate) use scheduler::Scheduler;
pub(crate) use stats::StatsReporter;

/// Rows one pass touches per store call; a full batch is followed by another at once.
pub(crate) const BATCH: u32 = 1000;

/// Settings of the maintenance services.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) schedule_interval: Duration,
    pub(crate) rescue_interval: Duration,
    pub(crate) retention: crate::Retention,
    pub(crate) prune_interval: Duration,
    pub(crate) stats_interval: Duration,
    /// Cron entries (none: no cron service).
    pub(crate) cron: Arc<[CronEntry]>,
    /// Where passes read the time.
    pub(crate) clock: Clock,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            schedule_interval: Duration::from_secs(1),
            rescue_interval: Duration::from_secs(15),
            retention: crate::Retention::default(),
            prune_interval: Duration::from_secs(60),
            stats_interval: Duration::from_secs(10),
            cron: Arc::from([]),
            clock: Clock::default(),
        }
    }
}

/// One maintenance service.
#[async_trait]
pub(crate) trait Service: Send + Sync + 'static {
    /// Name in logs.
    fn name(&self) -> &'static str;
    /// Time between passes (before jitter).
    fn interval(&self) -> Duration;
    /// One pass. May say how long to wait before the next one instead of the interval.
    async fn run_once(&self) -> Result<Option<Duration>, StoreError>;
    /// A signal that starts the next pass early.
    fn wake(&self) -> Option<Arc<Notify>> {
        None
    }
    /// Whether the first pass runs at start instead of after the first interval (which
    /// spreads the passes of workers started together).
    fn starts_at_once(&self) -> bool {
        false
    }
}

/// What a service is told by its worker: when to stop, and where to report a store that is
/// gone (a SQLite file deleted or replaced), so the worker stops at once whichever of its
/// tasks meets it first.
#[derive(Clone)]
pub(crate) struct Control {
    pub(crate) stop: watch::Receiver<bool>,
    /// Reports the error if it says the store is gone; whether it did.
    pub(crate) on_lost: Arc<dyn Fn(&StoreError) -> bool + Send + Sync>,
}

impl Control {
    /// Stops on `stop`; a lost store is only logged.
    #[cfg(test)]
    pub(crate) fn new(stop: watch::Receiver<bool>) -> Self {
        Control {
            stop,
            on_lost: Arc::new(|_| false),
        }
    }
}

/// Runs `svc` every interval (±10 % jitter, so many workers do not pass in lockstep), or
/// when the pass asked for another wait, or when woken, until `stop` turns true.
pub(crate) fn spawn(svc: impl Service, ctl: Control) -> JoinHandle<()> {
    let Control { mut stop, on_lost } = ctl;
    tokio::spawn(async move {
        let wake = svc.wake().unwrap_or_default();
        let mut asked = svc.starts_at_once().then_some(Duration::ZERO);
        loop {
            let wait = asked.take().unwrap_or_else(|| {
                let base = svc.interval().as_secs_f64();
                Duration::from_secs_f64(base * (0.9 + 0.2 * rand::random::<f64>()))
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
                _ = stop.changed() => return,
            }
            match svc.run_once().await {
                Ok(next) => asked = next,
                Err(e) if on_lost(&e) => {}
                Err(e) => tracing::warn!(service = svc.name(), error = %e,
                    "maintenance pass failed; will retry"),
            }
        }
    })
}

/// Starts every service the settings enable.
pub(crate) fn spawn_all(
    store: Arc<dyn Store>,
    settings: &Settings,
    queues: &[String],
    ctl: Control,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![
        spawn(
            Scheduler::new(store.clone(), settings.schedule_interval).clock(settings.clock),
            ctl.clone(),
        ),
        spawn(
            Rescuer::new(store.clone(), settings.rescue_interval).clock(settings.clock),
            ctl.clone(),
        ),
        spawn(
            StatsReporter::new(store.clone(), settings.stats_interval, queues),
            ctl.clone(),
        ),
    ];
    if !settings.cron.is_empty() {
        tasks.push(spawn(
            Cron::new(
                store.clone(),
                settings.cron.clone(),
                settings.schedule_interval,
            )
            .clock(settings.clock),
            ctl.clone(),
        ));
    }
    let keep = settings.retention.by_state();
    if !keep.is_empty() {
        tasks.push(spawn(
            Pruner::new(store, keep, settings.prune_interval).clock(settings.clock),
            ctl,
        ));
    }
    tasks
}
