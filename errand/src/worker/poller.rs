//! The poller: one query per poll interval finds which of the worker's queues have available
//! jobs, and wakes their producers — polling costs the same for 1 queue or 500 (a producer
//! polling on its own made a worker with 500 idle queues issue 500 claims a second). Wake-ups
//! (an insert in this process, Postgres `NOTIFY`) still reach a producer at once; this finds
//! what they cannot: jobs inserted by another process on SQLite, jobs released or rescued
//! elsewhere. Each producer also polls by itself, [`FALLBACK`] times less often, but only
//! while this task's polls are failing ([`Health`]): a healthy poller costs one statement
//! per interval whatever the number of queues.
//!
//! On a store that hears other processes (Postgres with `LISTEN`: every statement that makes
//! a job available, or frees a slot of a limited queue, notifies its queue; the listener wakes
//! every queue each time it reconnects) the poll is only a safety net and runs
//! [`HEARING_FACTOR`] times less often: an idle worker of a fleet then costs the database
//! about half a query a second (this poll every 10 s, the maintenance lease every 3.3 s).
//!
//! On a store whose poll reports other processes' changes (SQLite: see
//! `Store::poll_reports_changes`) the same statement also wakes the queue watcher when a
//! queue record changed and the scheduler when a job came due, so those two poll only as a
//! fallback: an idle SQLite worker makes one query a second, plus the maintenance lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{QueueConfig, Shared};

/// How many poll intervals a producer waits before claiming on its own.
pub(crate) const FALLBACK: u32 = 30;

/// How many poll intervals apart the poller asks when the store hears other processes.
pub(crate) const HEARING_FACTOR: u32 = 10;

pub(crate) async fn run(
    shared: Arc<Shared>,
    queues: Vec<QueueConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let reports = shared.store.poll_reports_changes();
    let every = match queues.iter().map(|q| q.poll_interval).min() {
        Some(every) => every,
        // No queue: nothing to claim, but on a store whose poll reports other processes'
        // changes it still wakes the scheduler when jobs come due.
        None if reports => shared.config.poll_interval,
        None => return,
    };
    let every = if shared.store.hears_other_processes() {
        every.saturating_mul(HEARING_FACTOR)
    } else {
        every
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        // Paused queues start nothing: their producers are woken by the resume.
        let asked: Vec<String> = queues
            .iter()
            .filter(|q| !shared.queue_state(&q.name).is_paused())
            .map(|q| q.name.clone())
            .collect();
        // With every queue paused the poll still runs where it reports changes: it is how a
        // resume from another process is noticed.
        if asked.is_empty() && !reports {
            shared.poll_health.polled(every);
            continue;
        }
        match shared.store.queues_with_available(&asked).await {
            Ok(found) => {
                shared.poll_health.polled(every);
                for q in found {
                    shared.store.signals().notify(&q);
                }
            }
            Err(e) => {
                shared.check_lost(&e);
                tracing::warn!(error = %e, "could not poll the queues for work; retrying");
            }
        }
    }
}

/// A producer's own poll: the fallback behind the poller.
pub(crate) fn fallback(interval: Duration) -> Duration {
    interval.saturating_mul(FALLBACK)
}

/// Whether the poller is doing its job, so producers need not poll on their own: one
/// successful poll within three of its intervals. (Were every producer to claim at its
/// fallback whatever the poller did, a worker with 500 idle queues would issue 1,000
/// statements every 30 s.)
#[derive(Debug, Default)]
pub(crate) struct Health {
    inner: std::sync::Mutex<Option<(tokio::time::Instant, Duration)>>,
}

impl Health {
    /// The poller, polling every `every`, just succeeded.
    pub(crate) fn polled(&self, every: Duration) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((tokio::time::Instant::now(), every));
    }

    /// Whether a poll succeeded within three intervals.
    pub(crate) fn fresh(&self) -> bool {
        match *self.inner.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((at, every)) => at.elapsed() <= every.saturating_mul(3),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fresh for three intervals after a successful poll, stale before any and after.
    #[tokio::test(start_paused = true)]
    async fn the_poller_is_fresh_for_three_intervals() {
        let h = Health::default();
        assert!(!h.fresh(), "no poll yet: producers poll on their own");
        h.polled(Duration::from_secs(10));
        assert!(h.fresh());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(h.fresh());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            !h.fresh(),
            "three intervals without a poll: producers take over"
        );
        h.polled(Duration::from_secs(10));
        assert!(h.fresh());
    }
}
