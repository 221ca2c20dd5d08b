//! A running worker ([`WorkerHandle`]) and its graceful shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use super::{completer, keeper, ErrorBackoff, Shared};

/// What a shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs still running when the grace period ended, stopped and returned to `available`
    /// without an attempt charged.
    pub released: u64,
}

/// A running worker; [`WorkerHandle::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct WorkerHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) stop_tx: watch::Sender<bool>,
    pub(super) final_tx: watch::Sender<bool>,
    pub(super) producers: Vec<JoinHandle<()>>,
    pub(super) services: Vec<JoinHandle<()>>,
    pub(super) keeper: keeper::Keeper,
    pub(super) sems: Vec<(Arc<Semaphore>, usize)>,
}

impl WorkerHandle {
    /// Resolves when the worker cannot go on because its store is gone (a SQLite file
    /// deleted, replaced or truncated while open), with the reason; pending otherwise. Shut
    /// the worker down then: [`Worker::run_until`](super::Worker::run_until) does.
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

    /// Whether this worker leads its store's maintenance right now: it holds the lease
    /// (see [`WorkerBuilder::leader_lease`](crate::WorkerBuilder::leader_lease)) and runs
    /// the scheduler, the rescuer, the pruner and the stats gauges for every worker.
    pub fn is_leader(&self) -> bool {
        *self.shared.leading.borrow()
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
