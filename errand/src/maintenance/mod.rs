//! Maintenance services: the scheduler, cron, the rescuer, the pruner, the stats reporter,
//! the tally and the reclaimer.
//!
//! They share one shape: a struct holding the store and its settings, `run_once` doing one
//! pass (tests call it directly), and [`spawn`] running it on a jittered interval until
//! stopped. A failing pass is logged and retried on the next tick; it never stops the worker.
//!
//! The services that need one runner per store (scheduler, rescuer, pruner, stats, tally,
//! reclaimer) run on the worker that holds the maintenance lease (the [`Elector`] takes it);
//! cron runs on every worker (each tick is enqueued once, by a unique key). Each pass is
//! idempotent and safe to run from many processes all the same, so two leaders overlapping
//! for a moment cost queries, never correctness.

mod cron;
mod elector;
mod presence;
mod pruner;
mod reclaimer;
mod rescuer;
mod scheduler;
mod stats;
mod tally;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use errand_core::{Store, StoreError};

use crate::clock::Clock;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub(crate) use cron::{Cron, CronEntry};
pub(crate) use elector::Elector;
pub(crate) use presence::{Identity, Presence};
pub(crate) use pruner::Pruner;
pub(crate) use reclaimer::Reclaimer;
pub(crate) use rescuer::Rescuer;
pub(crate) use scheduler::Scheduler;
pub(crate) use stats::StatsReporter;
pub(crate) use tally::Tally;

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
    /// Between this worker's registry heartbeats.
    pub(crate) presence_interval: Duration,
    /// The maintenance leader's lease.
    pub(crate) leader_lease: Duration,
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
            presence_interval: Duration::from_secs(10),
            leader_lease: Duration::from_secs(10),
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
    /// Whether only the store's maintenance leader runs it.
    fn leader_only(&self) -> bool {
        false
    }
    /// Called once when the worker stops it (after its last pass).
    async fn stopped(&self) {}
}

/// What a service is told by its worker: when to stop, and where to report a store that is
/// gone (a SQLite file deleted or replaced), so the worker stops at once whichever of its
/// tasks meets it first.
#[derive(Clone)]
pub(crate) struct Control {
    pub(crate) stop: watch::Receiver<bool>,
    /// Reports the error if it says the store is gone; whether it did.
    pub(crate) on_lost: Arc<dyn Fn(&StoreError) -> bool + Send + Sync>,
    /// Whether this worker leads the store's maintenance (set by the [`Elector`]).
    pub(crate) leading: Arc<watch::Sender<bool>>,
}

impl Control {
    /// Stops on `stop`; a lost store is only logged; leads from the start.
    #[cfg(test)]
    pub(crate) fn new(stop: watch::Receiver<bool>) -> Self {
        Control {
            stop,
            on_lost: Arc::new(|_| false),
            leading: Arc::new(watch::channel(true).0),
        }
    }
}

/// Runs `svc` every interval (±10 % jitter, so many workers do not pass in lockstep), or
/// when the pass asked for another wait, or when woken, until `stop` turns true.
/// A leader-only service waits, doing nothing, while this worker does not lead, and passes
/// at once when it becomes the leader.
pub(crate) fn spawn(svc: impl Service, ctl: Control) -> JoinHandle<()> {
    let Control {
        mut stop,
        on_lost,
        leading: leading_tx,
    } = ctl;
    let leader_only = svc.leader_only();
    let mut leading = leading_tx.subscribe();
    tokio::spawn(async move {
        let _sender = leading_tx; // so `leading.changed()` never fails
        let wake = svc.wake().unwrap_or_default();
        let mut asked = svc.starts_at_once().then_some(Duration::ZERO);
        loop {
            if leader_only && !*leading.borrow_and_update() {
                tokio::select! {
                    _ = leading.changed() => asked = Some(Duration::ZERO),
                    _ = stop.changed() => {
                        svc.stopped().await;
                        return;
                    }
                }
                continue;
            }
            let wait = asked.take().unwrap_or_else(|| {
                let base = svc.interval().as_secs_f64();
                Duration::from_secs_f64(base * (0.9 + 0.2 * rand::random::<f64>()))
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
                // Leadership lost: back to waiting at the top.
                _ = leading.changed(), if leader_only => continue,
                _ = stop.changed() => {
                    svc.stopped().await;
                    return;
                }
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

/// Starts every service the settings enable, on the application's runtime. The
/// [`Elector`] is not among them: it runs on the keeper thread, beside the heartbeat (see
/// `worker::keeper`).
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
        spawn(
            Tally::new(store.clone(), tally::INTERVAL).clock(settings.clock),
            ctl.clone(),
        ),
        spawn(
            Reclaimer::new(store.clone(), reclaimer::INTERVAL),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Counts its passes; leader-only or not.
    struct Counting {
        leader_only: bool,
        passes: Arc<AtomicU32>,
    }

    #[async_trait]
    impl Service for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn interval(&self) -> Duration {
            Duration::from_millis(5)
        }
        async fn run_once(&self) -> Result<Option<Duration>, StoreError> {
            self.passes.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
        fn leader_only(&self) -> bool {
            self.leader_only
        }
    }

    /// Waits (bounded) until `n` reaches `at_least`.
    async fn until(n: &AtomicU32, at_least: u32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while n.load(Ordering::SeqCst) < at_least {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reached {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_leader_only_service_passes_only_while_this_worker_leads() {
        let (stop_tx, stop) = watch::channel(false);
        let mut ctl = Control::new(stop);
        ctl.leading = Arc::new(watch::channel(false).0);
        let (every, leader) = (Arc::<AtomicU32>::default(), Arc::<AtomicU32>::default());
        let services = [
            spawn(
                Counting {
                    leader_only: false,
                    passes: every.clone(),
                },
                ctl.clone(),
            ),
            spawn(
                Counting {
                    leader_only: true,
                    passes: leader.clone(),
                },
                ctl.clone(),
            ),
        ];
        // The other service is the clock: twenty of its passes, none of the leader's.
        until(&every, 20).await;
        assert_eq!(leader.load(Ordering::SeqCst), 0, "passed without leading");
        ctl.leading.send_replace(true);
        until(&leader, 3).await;
        ctl.leading.send_replace(false);
        // A pass under way when leadership went may still finish: settle, then count.
        let base = every.load(Ordering::SeqCst);
        until(&every, base + 2).await;
        let after = leader.load(Ordering::SeqCst);
        until(&every, base + 22).await;
        assert_eq!(
            leader.load(Ordering::SeqCst),
            after,
            "passed after losing the lead"
        );
        stop_tx.send_replace(true);
        for s in services {
            s.await.unwrap();
        }
    }
}
