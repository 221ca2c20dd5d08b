//! Notices job code that holds a runtime thread: a poll of a job's future that has not
//! returned after [`Config::stall_warning`](super::Config) (blocking calls such as
//! `std::thread::sleep`, blocking I/O or a long computation inside async code), and runs
//! without a timeout that go on for many leases. It only logs: code that does not yield
//! cannot be stopped from outside, and the slot and lease stay held until it ends.
//!
//! It runs on the keeper thread (see `keeper`), so it sees stalls even when every thread of
//! the application's runtime is held.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Shared;

/// What the watchdog knows of one running job.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) kind: String,
    started: Instant,
    /// When the poll under way began (ns since `started`, plus one); 0 between polls.
    polling_since: AtomicU64,
    /// The stall last reported (its `polling_since`), so each is reported once.
    warned_stall: AtomicU64,
    /// Whether the run has a timeout; without one, long runs are reported.
    has_timeout: bool,
    /// Run time (ns) at which the next long-run warning is due.
    next_long_warning: AtomicU64,
    /// How long the run took (ns, plus one), stamped by the poll that finished it; 0 before.
    ran: AtomicU64,
}

impl Watch {
    pub(crate) fn new(kind: &str, has_timeout: bool, long_run: Duration) -> Arc<Self> {
        Arc::new(Watch {
            kind: kind.to_owned(),
            started: Instant::now(),
            polling_since: AtomicU64::new(0),
            warned_stall: AtomicU64::new(0),
            has_timeout,
            next_long_warning: AtomicU64::new(nanos(long_run)),
            ran: AtomicU64::new(0),
        })
    }

    /// How long the run took, once its future has returned: stamped when it returned, not
    /// when the executor saw it (which a job holding the executor's thread can delay).
    pub(crate) fn ran_for(&self) -> Option<Duration> {
        match self.ran.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns - 1)),
        }
    }

    /// How long the poll under way has been running, if one is.
    pub(crate) fn stalled_for(&self) -> Option<Duration> {
        match self.polling_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(since - 1)),
            ),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A job's future, stamping the start of each poll for the watchdog.
pub(crate) struct Watched<F> {
    pub(crate) inner: F,
    pub(crate) watch: Arc<Watch>,
}

/// Clears the poll stamp when the poll returns or unwinds (a panicking job).
struct PollGuard<'a>(&'a AtomicU64);

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

impl<F: Future + Unpin> Future for Watched<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let stamp = nanos(self.watch.started.elapsed()).saturating_add(1);
        self.watch.polling_since.store(stamp, Ordering::Relaxed);
        let watch = self.watch.clone();
        let _guard = PollGuard(&watch.polling_since);
        let polled = Pin::new(&mut self.inner).poll(cx);
        if polled.is_ready() {
            let ran = nanos(watch.started.elapsed()).saturating_add(1);
            watch.ran.store(ran, Ordering::Relaxed);
        }
        polled
    }
}

pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every =
        (shared.config.stall_warning / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        check(&shared);
    }
}

/// One look at every running job.
pub(crate) fn check(shared: &Shared) {
    let threshold = shared.config.stall_warning;
    for (lease, w) in shared.inflight.watches() {
        if let Some(stalled) = w.stalled_for() {
            let since = w.polling_since.load(Ordering::Relaxed);
            if stalled >= threshold && w.warned_stall.swap(since, Ordering::Relaxed) != since {
                tracing::warn!(
                    job_id = lease.id,
                    attempt = lease.attempt,
                    kind = %w.kind,
                    stalled_ms = stalled.as_millis() as u64,
                    "job {} (kind '{}') has not yielded for {} ms: it holds a runtime thread \
                     (std::thread::sleep, blocking I/O or a long computation in async code), \
                     which delays other jobs and cannot be stopped by a timeout; run such code \
                     with cx.blocking(...)",
                    lease.id,
                    w.kind,
                    stalled.as_millis()
                );
                crate::telemetry::stalled(&w.kind);
            }
        }
        if !w.has_timeout {
            let ran = w.started.elapsed();
            let due = w.next_long_warning.load(Ordering::Relaxed);
            if nanos(ran) >= due {
                w.next_long_warning
                    .store(due.saturating_mul(2), Ordering::Relaxed);
                tracing::warn!(
                    job_id = lease.id,
                    attempt = lease.attempt,
                    kind = %w.kind,
                    running_s = ran.as_secs(),
                    "job {} (kind '{}') has run for {} s and has no timeout: if it may hang, \
                     give its type a timeout (JobOptions::timeout) or the worker a default \
                     (WorkerBuilder::job_defaults)",
                    lease.id,
                    w.kind,
                    ran.as_secs()
                );
            }
        }
    }
}
