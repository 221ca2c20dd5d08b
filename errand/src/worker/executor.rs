//! Runs one claimed job, as a pipeline: record start → resolve handler → run under timeout in
//! its own task (so a panic is caught and an abort is possible) → normalize the result into
//! an outcome → hand it to the completer.
//!
//! It never writes to the store itself and never lets a job's failure escape.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use errand_core::{later, Backoff, ErrorRecord, Finish, FinishAction, JobRow};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::pacing::QueueState;
use super::registry::StartError;
use super::watchdog::{Watch, Watched};
use super::{panic_message, Pending, Shared};
use crate::context::Attempt;
use crate::error::FailAction;
use crate::telemetry::{self, Ended};
use crate::{JobError, Outcome};

/// How a run ended, before it is turned into a store change.
#[derive(Debug)]
pub(crate) enum RunResult {
    Returned(Result<Outcome, JobError>),
    Panicked(String),
    /// The timeout passed; `overran` is how long the job went on before it could be stopped
    /// (code that does not yield runs until its next await).
    TimedOut {
        limit: Duration,
        overran: Duration,
    },
    UnknownKind,
    BadPayload(String),
}

/// Runs `row` to its outcome and queues the outcome, then the queue's next buffered jobs
/// while there are any. Holds `permit` (one unit of the queue's concurrency) until done.
pub(crate) async fn execute(
    shared: Arc<Shared>,
    queue: Arc<QueueState>,
    row: JobRow,
    permit: OwnedSemaphorePermit,
) {
    let mut next = Some(row);
    while let Some(row) = next {
        // A job whose lease was lost while it waited (cancelled by an operator) is dropped.
        if shared.inflight.holds(row.lease_ref()) {
            if let Some(ran) = execute_one(&shared, row).await {
                queue.record_run(ran);
            }
        }
        next = queue.next_buffered();
    }
    drop(permit);
    queue.freed.notify_one();
}

/// Runs one job to its outcome and queues the outcome; how long it ran, unless it was
/// stopped (shutdown, lost lease).
async fn execute_one(shared: &Arc<Shared>, row: JobRow) -> Option<Duration> {
    let row = Arc::new(row);
    let span = tracing::info_span!(
        "errand.job",
        kind = %row.kind,
        id = row.id,
        queue = %row.queue,
        attempt = row.attempt,
    );
    let began = Instant::now();
    let now = shared.now().await;
    let due = row.run_at.max(row.created_at);
    telemetry::started(
        &row.queue,
        &row.kind,
        (now - due).to_std().unwrap_or_default(),
    );
    let attempt = Arc::new(Attempt::new(shared));
    let result = run(shared, &row, span.clone(), attempt.clone()).await;
    if result.is_some() {
        attempt.flush(row.lease_ref()).await;
    }
    if attempt.completed.load(Ordering::SeqCst)
        && matches!(result, Some(RunResult::Returned(Ok(_))))
    {
        // The job completed itself in its transaction and returned Ok (so it committed): the
        // row is final, nothing left to record. Any other ending (an error after a rollback,
        // a panic, a timeout) is recorded as usual: if the transaction did commit, the row is
        // no longer `running` under this attempt and the write changes nothing.
        span.in_scope(|| tracing::debug!("job completed in its own transaction"));
        // Whoever waits for it in this process hears it (other processes: the store's
        // notification at commit, Postgres).
        shared.store.signals().notify_ended();
        telemetry::ended(&row.queue, &row.kind, Ended::Completed, began.elapsed());
        shared.inflight.recorded([row.lease_ref()]);
        return Some(began.elapsed());
    }
    // Stopped by shutdown or by a lost lease: nothing to record.
    let result = result?;
    let duration = began.elapsed();
    let default_backoff = shared.config.default_backoff;
    let end = shared.now().await;
    let action = decide(&row, result, end, default_backoff, rand::random());
    span.in_scope(|| log_outcome(&action, duration));
    if shared.inflight.ended(row.lease_ref()) {
        shared
            .record(Pending {
                finish: Finish {
                    lease: row.lease_ref(),
                    at: end,
                    action,
                },
                queue: row.queue.clone(),
                kind: row.kind.clone(),
                duration,
            })
            .await;
    }
    Some(duration)
}

/// Runs the job in its own task. `None` when the task was aborted (shutdown, lost lease).
pub(crate) async fn run(
    shared: &Arc<Shared>,
    row: &Arc<JobRow>,
    span: tracing::Span,
    attempt: Arc<Attempt>,
) -> Option<RunResult> {
    let fut = match shared.registry.start(row.clone(), attempt) {
        Ok(fut) => fut,
        Err(StartError::UnknownKind) => return Some(RunResult::UnknownKind),
        Err(StartError::BadPayload(e)) => return Some(RunResult::BadPayload(e.to_string())),
    };
    let timeout = row
        .timeout_ms
        .map(|ms| Duration::from_millis(ms.max(1) as u64))
        .or(shared.config.default_timeout);
    let watch = Watch::new(&row.kind, timeout.is_some(), shared.config.lease * 10);
    let watched = Watched {
        inner: fut,
        watch: watch.clone(),
    };
    let mut handle = tokio::spawn(watched.instrument(span));
    let abort = handle.abort_handle();
    shared
        .inflight
        .spawned(row.lease_ref(), abort.clone(), watch.clone());
    let joined = match timeout {
        Some(t) => match tokio::time::timeout(t, &mut handle).await {
            // Ended past its timeout, yet seen here as ended: code that did not yield held
            // the thread this executor waits on (tokio runs a task a job spawns next on the
            // same thread), so the timer could not interrupt it. Timed out all the same, as
            // when the timer is seen first.
            Ok(j) => match watch.ran_for() {
                Some(ran) if ran > t => {
                    return Some(RunResult::TimedOut {
                        limit: t,
                        overran: ran - t,
                    })
                }
                _ => j,
            },
            Err(_) => {
                abort.abort();
                // The job keeps its slot and its lease until its task has really ended:
                // code that does not yield runs on until its next await, and starting the
                // next job meanwhile would run more than the queue's concurrency.
                let over = Instant::now();
                let _ = handle.await;
                return Some(RunResult::TimedOut {
                    limit: t,
                    overran: over.elapsed(),
                });
            }
        },
        None => handle.await,
    };
    match joined {
        Ok(res) => Some(RunResult::Returned(res)),
        Err(e) if e.is_panic() => Some(RunResult::Panicked(panic_message(e.into_panic().as_ref()))),
        Err(_) => {
            shared.inflight.stopped(row.lease_ref());
            None
        }
    }
}

/// Turns a run's result into the store change (the counter it moves follows from it:
/// `Ended::from`). Pure: `unit` is the random number that places the backoff inside its
/// jitter band.
pub(crate) fn decide(
    row: &JobRow,
    result: RunResult,
    now: DateTime<Utc>,
    default_backoff: Backoff,
    unit: f64,
) -> FinishAction {
    let fail = |message: String, panic: bool, after: Option<Duration>| {
        let mut error = ErrorRecord::new(row.attempt, now, message);
        error.panic = panic;
        if row.attempt >= row.max_attempts {
            return FinishAction::Discard { error };
        }
        let delay = after.unwrap_or_else(|| {
            row.backoff
                .unwrap_or(default_backoff)
                .delay(row.attempt, unit)
        });
        let run_at = later(now, delay);
        FinishAction::Retry { run_at, error }
    };
    let record = |message: String| Some(ErrorRecord::new(row.attempt, now, message));
    match result {
        RunResult::Returned(Ok(Outcome::Complete)) => FinishAction::Complete,
        RunResult::Returned(Ok(Outcome::CompleteWith(value))) => match value.into_json() {
            Ok(result) => FinishAction::CompleteWith { result },
            // The work is done but its result cannot be stored: running it again would
            // repeat the work and most likely the same result, so the job is discarded
            // with the reason (retry it by hand once the job type is fixed).
            Err(problem) => FinishAction::Discard {
                error: ErrorRecord::new(
                    row.attempt,
                    now,
                    format!(
                        "the job ran, but its result cannot be stored: {problem}; not retried \
                         (that would repeat the work): fix what the job returns, then retry it \
                         by hand"
                    ),
                ),
            },
        },
        RunResult::Returned(Ok(Outcome::Retry { after, reason })) => fail(reason, false, after),
        RunResult::Returned(Ok(Outcome::Snooze(after))) => FinishAction::Snooze {
            run_at: later(now, after),
        },
        RunResult::Returned(Ok(Outcome::Cancel(reason))) => FinishAction::Cancel {
            error: record(reason),
        },
        RunResult::Returned(Ok(Outcome::Discard(reason))) => FinishAction::Discard {
            error: ErrorRecord::new(row.attempt, now, reason),
        },
        RunResult::Returned(Err(e)) => match e.action() {
            FailAction::Retry => fail(e.message().to_owned(), false, None),
            FailAction::Discard => FinishAction::Discard {
                error: ErrorRecord::new(row.attempt, now, e.message()),
            },
            FailAction::Cancel => FinishAction::Cancel {
                error: record(e.message().to_owned()),
            },
        },
        RunResult::Panicked(msg) => fail(format!("job panicked: {msg}"), true, None),
        RunResult::TimedOut { limit, overran } => {
            fail(timeout_message(limit, overran), false, None)
        }
        RunResult::UnknownKind => fail(
            format!(
                "unknown job kind '{}': this worker has no handler for it (register the type with \
                 WorkerBuilder::register, or run a worker that has it); {}",
                row.kind,
                if row.attempt >= row.max_attempts {
                    "its attempts are used up, so it is discarded: retry it by hand once a worker \
                     has the type"
                } else {
                    "the job is kept and retried"
                }
            ),
            false,
            None,
        ),
        RunResult::BadPayload(e) => FinishAction::Discard {
            error: ErrorRecord::new(
                row.attempt,
                now,
                format!(
                    "payload does not deserialize into kind '{}': {e}; the payload is kept \
                     unchanged: fix it or the job type, then retry the job",
                    row.kind
                ),
            ),
        },
    }
}

/// A stop that takes longer than this was the job not yielding, not the abort's own latency.
const PROMPT_STOP: Duration = Duration::from_millis(50);

fn timeout_message(limit: Duration, overran: Duration) -> String {
    if overran < PROMPT_STOP {
        format!(
            "job timed out after {} ms and was stopped",
            limit.as_millis()
        )
    } else {
        format!(
            "job timed out after {} ms but did not yield, so it ran on for another {} ms \
             before it could be stopped (its slot and lease were held until then): blocking \
             code in an async job holds a runtime thread; run it with cx.blocking(...)",
            limit.as_millis(),
            overran.as_millis()
        )
    }
}

fn log_outcome(action: &FinishAction, duration: Duration) {
    let ms = duration.as_secs_f64() * 1e3;
    match action {
        FinishAction::Complete | FinishAction::CompleteWith { .. } => {
            tracing::debug!(duration_ms = ms, "job completed")
        }
        FinishAction::Snooze { run_at } => tracing::debug!(%run_at, "job snoozed"),
        FinishAction::Retry { run_at, error } => {
            tracing::warn!(duration_ms = ms, %run_at, error = %error.message, "job failed, will retry")
        }
        FinishAction::Discard { error } => {
            tracing::error!(duration_ms = ms, error = %error.message, "job discarded")
        }
        FinishAction::Cancel { error } => tracing::info!(
            reason = error.as_ref().map(|e| e.message.as_str()).unwrap_or(""),
            "job cancelled"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use errand_core::JobState;

    fn row(attempt: i32, max: i32) -> JobRow {
        let t = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let mut row = JobRow::new(1, "k", "q", "{}");
        row.state = JobState::Running;
        row.attempt = attempt;
        row.max_attempts = max;
        (row.run_at, row.created_at, row.attempted_at) = (t, t, Some(t));
        row.backoff = Some(Backoff::constant(Duration::from_secs(7)));
        row
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_100, 0).unwrap()
    }

    fn go(row: &JobRow, r: RunResult) -> (FinishAction, Ended) {
        let action = decide(row, r, now(), Backoff::default(), 0.5);
        let ended = Ended::from(&action);
        (action, ended)
    }

    #[test]
    fn error_retries_after_the_rows_backoff() {
        let (a, e) = go(&row(1, 3), RunResult::Returned(Err(JobError::msg("nope"))));
        assert_eq!(e, Ended::Retried);
        match a {
            FinishAction::Retry { run_at, error } => {
                assert_eq!(run_at, now() + chrono::Duration::seconds(7));
                assert_eq!(error.message, "nope");
                assert_eq!(error.attempt, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn last_attempt_failure_discards() {
        let (a, e) = go(&row(3, 3), RunResult::Returned(Err(JobError::msg("nope"))));
        assert_eq!(e, Ended::Discarded);
        assert!(matches!(a, FinishAction::Discard { error } if error.message == "nope"));
    }

    #[test]
    fn panic_is_recorded_as_panic() {
        let (a, _) = go(
            &row(1, 3),
            RunResult::Panicked("index out of bounds".into()),
        );
        match a {
            FinishAction::Retry { error, .. } => {
                assert!(error.panic);
                assert_eq!(error.message, "job panicked: index out of bounds");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_payload_discards_at_once() {
        let (a, e) = go(
            &row(1, 20),
            RunResult::BadPayload("missing field `to`".into()),
        );
        assert_eq!(e, Ended::Discarded);
        assert!(
            matches!(&a, FinishAction::Discard { error } if error.message.contains("missing field `to`")),
            "{a:?}"
        );
    }

    #[test]
    fn unknown_kind_on_the_last_attempt_says_it_is_discarded() {
        let (a, e) = go(&row(20, 20), RunResult::UnknownKind);
        assert_eq!(e, Ended::Discarded);
        assert!(
            matches!(&a, FinishAction::Discard { error } if error.message.contains("attempts are used up, so it is discarded") && !error.message.contains("kept and retried")),
            "{a:?}"
        );
    }

    #[test]
    fn unknown_kind_is_retried_not_dropped() {
        let (a, e) = go(&row(1, 20), RunResult::UnknownKind);
        assert_eq!(e, Ended::Retried);
        assert!(
            matches!(&a, FinishAction::Retry { error, .. } if error.message.contains("unknown job kind 'k'")),
            "{a:?}"
        );
    }

    #[test]
    fn explicit_outcomes_map_to_actions() {
        let r = row(2, 3);
        assert!(matches!(
            go(&r, RunResult::Returned(Ok(Outcome::Complete))).0,
            FinishAction::Complete
        ));
        assert!(matches!(
            go(&r, RunResult::Returned(Ok(Outcome::snooze(Duration::from_secs(5))))).0,
            FinishAction::Snooze { run_at } if run_at == now() + chrono::Duration::seconds(5)
        ));
        assert!(matches!(
            go(&r, RunResult::Returned(Ok(Outcome::retry_after(Duration::from_secs(1), "later")))).0,
            FinishAction::Retry { run_at, .. } if run_at == now() + chrono::Duration::seconds(1)
        ));
        assert!(matches!(
            go(&r, RunResult::Returned(Ok(Outcome::cancel("gone")))).0,
            FinishAction::Cancel { error: Some(e) } if e.message == "gone"
        ));
        assert!(matches!(
            go(&r, RunResult::Returned(Err(JobError::discard("corrupt")))).0,
            FinishAction::Discard { error } if error.message == "corrupt"
        ));
        assert!(matches!(
            go(&r, RunResult::Returned(Err(JobError::cancel("stop")))).0,
            FinishAction::Cancel { .. }
        ));
    }

    #[test]
    fn timeout_message_names_the_limit() {
        let timed_out = |overran| RunResult::TimedOut {
            limit: Duration::from_millis(250),
            overran,
        };
        let (a, _) = go(&row(1, 3), timed_out(Duration::from_millis(1)));
        assert!(
            matches!(&a, FinishAction::Retry { error, .. } if error.message == "job timed out after 250 ms and was stopped"),
            "{a:?}"
        );
        let (a, _) = go(&row(1, 3), timed_out(Duration::from_millis(4_000)));
        assert!(
            matches!(&a, FinishAction::Retry { error, .. } if error.message.contains("did not yield, so it ran on for another 4000 ms")),
            "{a:?}"
        );
    }
}
