//! Every metric errand emits, in one place (names and labels are part of the public surface;
//! the crate docs list them). Recorded through the `metrics` facade: install any recorder
//! (Prometheus, StatsD, …) in the application to export them.

use std::time::Duration;

use errand_core::JobState;

pub(crate) const ENQUEUED: &str = "errand_jobs_enqueued_total";
pub(crate) const ENQUEUED_IN_TX: &str = "errand_jobs_enqueued_in_tx_total";
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

pub(crate) fn enqueued(queue: &str, kind: &str, n: u64) {
    metrics::counter!(ENQUEUED, "queue" => queue.to_owned(), "kind" => kind.to_owned())
        .increment(n);
}

/// Jobs inserted in the application's transaction (counted before its commit or rollback).
pub(crate) fn enqueued_in_tx(queue: &str, kind: &str, n: u64) {
    metrics::counter!(ENQUEUED_IN_TX, "queue" => queue.to_owned(), "kind" => kind.to_owned())
        .increment(n);
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

impl From<&errand_core::FinishAction> for Ended {
    fn from(action: &errand_core::FinishAction) -> Self {
        use errand_core::FinishAction::*;
        match action {
            Complete | CompleteWith { .. } => Ended::Completed,
            Retry { .. } => Ended::Retried,
            Snooze { .. } => Ended::Snoozed,
            Discard { .. } => Ended::Discarded,
            Cancel { .. } => Ended::Cancelled,
        }
    }
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

/// Registers a description (Prometheus' `HELP` text) and unit for every metric errand emits,
/// with the installed `metrics` recorder. Call it once after installing the recorder (for
/// example `metrics-exporter-prometheus`); see `docs/deploying.md`.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        ENQUEUED,
        Unit::Count,
        "Jobs a Client inserted and committed (unique-key duplicates not counted), by queue and kind"
    );
    describe_counter!(
        ENQUEUED_IN_TX,
        Unit::Count,
        "Jobs inserted in the application's transaction (enqueue_tx), counted at insert: one whose transaction rolled back is counted too"
    );
    describe_counter!(STARTED, Unit::Count, "Job runs started, by queue and kind");
    describe_counter!(
        COMPLETED,
        Unit::Count,
        "Job runs that completed, by queue and kind"
    );
    describe_counter!(
        RETRIED,
        Unit::Count,
        "Job runs that failed and will be retried, by queue and kind"
    );
    describe_counter!(
        SNOOZED,
        Unit::Count,
        "Job runs that snoozed (run again later without using an attempt)"
    );
    describe_counter!(
        DISCARDED,
        Unit::Count,
        "Job runs that ended the job as discarded (attempts used up or unrecoverable)"
    );
    describe_counter!(
        CANCELLED,
        Unit::Count,
        "Job runs that ended the job as cancelled"
    );
    describe_counter!(
        RESCUED,
        Unit::Count,
        "Jobs whose worker stopped heartbeating, returned to their queue or discarded"
    );
    describe_counter!(STALLED, Unit::Count, "Polls of a job's future that held their thread past the stall threshold (blocking code in async), by kind");
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "How long job runs took, by queue and kind"
    );
    describe_histogram!(
        LATENCY,
        Unit::Seconds,
        "Time from a job being due (run_at) to its start, by queue and kind"
    );
    describe_gauge!(GAUGE, Unit::Count, "Jobs in the store by queue and state; every worker publishes the same numbers: aggregate with max, not sum");
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::DebuggingRecorder;

    #[test]
    fn every_metric_has_a_description() {
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        let names = [
            super::ENQUEUED,
            super::ENQUEUED_IN_TX,
            super::STARTED,
            super::COMPLETED,
            super::RETRIED,
            super::SNOOZED,
            super::DISCARDED,
            super::CANCELLED,
            super::RESCUED,
            super::STALLED,
        ];
        metrics::with_local_recorder(&recorder, || {
            super::describe_metrics();
            for name in names {
                metrics::counter!(name).increment(1);
            }
            metrics::histogram!(super::DURATION).record(1.0);
            metrics::histogram!(super::LATENCY).record(1.0);
            metrics::gauge!(super::GAUGE).set(1.0);
        });
        let described: Vec<(String, bool)> = snap
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, text, _)| (key.key().name().to_owned(), text.is_some()))
            .collect();
        assert_eq!(described.len(), names.len() + 3);
        for (name, has) in described {
            assert!(has, "{name} has no description");
        }
    }
}
