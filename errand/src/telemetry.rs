//! Every metric errand emits, in one place (names and labels are part of the public surface;
//! the crate docs list them). Recorded through the `metrics` facade: install any recorder
//! (Prometheus, StatsD, …) in the application to export them.

use std::time::Duration;

use errand_core::JobState;

pub(crate) const ENQUEUED: &str = "errand_jobs_enqueued_total";
pub(crate) const STARTED: &str = "errand_jobs_started_total";
pub(crate) const COMPLETED: &str = "errand_jobs_completed_total";
pub(crate) const RETRIED: &str = "errand_jobs_retried_total";
pub(crate) const SNOOZED: &str = "errand_jobs_snoozed_total";
pub(crate) const DISCARDED: &str = "errand_jobs_discarded_total";
pub(crate) const CANCELLED: &str = "errand_jobs_cancelled_total";
pub(crate) const RESCUED: &str = "errand_jobs_rescued_total";
pub(crate) const DURATION: &str = "errand_job_duration_seconds";
pub(crate) const LATENCY: &str = "errand_job_latency_seconds";
pub(crate) const GAUGE: &str = "errand_jobs";
pub(crate) const STALLED: &str = "errand_jobs_stalled_total";

pub(crate) fn enqueued(queue: &str, kind: &str) {
    metrics::counter!(ENQUEUED, "queue" => queue.to_owned(), "kind" => kind.to_owned())
        .increment(1);
}

pub(crate) fn started(queue: &str, kind: &str, latency: Duration) {
    metrics::counter!(STARTED, "queue" => queue.to_owned(), "kind" => kind.to_owned()).increment(1);
    metrics::histogram!(LATENCY, "queue" => queue.to_owned(), "kind" => kind.to_owned())
        .record(latency.as_secs_f64());
}

/// Which counter an applied outcome increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Completed,
    Retried,
    Snoozed,
    Discarded,
    Cancelled,
}

pub(crate) fn ended(queue: &str, kind: &str, how: Ended, duration: Duration) {
    let name = match how {
        Ended::Completed => COMPLETED,
        Ended::Retried => RETRIED,
        Ended::Snoozed => SNOOZED,
        Ended::Discarded => DISCARDED,
        Ended::Cancelled => CANCELLED,
    };
    metrics::counter!(name, "queue" => queue.to_owned(), "kind" => kind.to_owned()).increment(1);
    metrics::histogram!(DURATION, "queue" => queue.to_owned(), "kind" => kind.to_owned())
        .record(duration.as_secs_f64());
}

/// A job's poll held its thread past the stall threshold (see `worker::watchdog`).
pub(crate) fn stalled(kind: &str) {
    metrics::counter!(STALLED, "kind" => kind.to_owned()).increment(1);
}

pub(crate) fn rescued(n: u64) {
    metrics::counter!(RESCUED).increment(n);
}

pub(crate) fn jobs_in_state(queue: &str, state: JobState, count: u64) {
    metrics::gauge!(GAUGE, "queue" => queue.to_owned(), "state" => state.as_str())
        .set(count as f64);
}
