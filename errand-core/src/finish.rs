use chrono::{DateTime, Utc};

use crate::{ErrorRecord, JobId, JobRow, JobState};

/// Identifies one attempt of a job: every change to a running job is fenced by it, so a worker
/// that lost its lease cannot overwrite the result of a newer attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// The job.
    pub id: JobId,
    /// The attempt that holds it.
    pub attempt: i32,
}

/// The recorded end of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// Which attempt ended.
    pub lease: LeaseRef,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// What the job becomes.
    pub action: FinishAction,
}

/// The row changes a [`Finish`] makes, spelled out once for every store.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishEffect<'a> {
    /// The job's new state.
    pub state: JobState,
    /// New `run_at`, if it changes.
    pub run_at: Option<DateTime<Utc>>,
    /// Error to append to the history, if any.
    pub error: Option<&'a ErrorRecord>,
    /// Added to `attempt` (−1 for a snooze, which gives its attempt back).
    pub attempt_delta: i32,
    /// Set when the new state is final.
    pub finalized_at: Option<DateTime<Utc>>,
    /// The job's result (JSON text), stored when it completed with one.
    pub result: Option<&'a str>,
}

impl Finish {
    /// What this finish does to the job's row.
    pub fn effect(&self) -> FinishEffect<'_> {
        let mut result = None;
        let (state, run_at, error, attempt_delta) = match &self.action {
            FinishAction::Complete => (JobState::Completed, None, None, 0),
            FinishAction::CompleteWith { result: r } => {
                result = Some(r.as_str());
                (JobState::Completed, None, None, 0)
            }
            FinishAction::Retry { run_at, error } => {
                let state = if *run_at > self.at {
                    JobState::Retryable
                } else {
                    JobState::Available
                };
                (state, Some(*run_at), Some(error), 0)
            }
            FinishAction::Snooze { run_at } => (JobState::Scheduled, Some(*run_at), None, -1),
            FinishAction::Cancel { error } => (JobState::Cancelled, None, error.as_ref(), 0),
            FinishAction::Discard { error } => (JobState::Discarded, None, Some(error), 0),
        };
        FinishEffect {
            state,
            run_at,
            error,
            attempt_delta,
            finalized_at: state.is_final().then_some(self.at),
            result,
        }
    }
}

/// What a finished attempt does to its job.
#[derive(Debug, Clone, PartialEq)]
pub enum FinishAction {
    /// `completed`.
    Complete,
    /// `completed`, storing the job's result (JSON text, at most [`crate::MAX_RESULT_LEN`]
    /// bytes, checked by the runtime) with it.
    CompleteWith {
        /// The result, as JSON text.
        result: String,
    },
    /// Failed: `retryable` until `run_at` (or `available` at once when `run_at` is not after the
    /// finish time), with the error appended to its history.
    Retry {
        /// Next attempt's earliest start.
        run_at: DateTime<Utc>,
        /// Why it failed.
        error: ErrorRecord,
    },
    /// Run again at `run_at` without using an attempt: the job goes back to `scheduled`.
    Snooze {
        /// When to run again.
        run_at: DateTime<Utc>,
    },
    /// `cancelled`, with an optional reason appended to the history.
    Cancel {
        /// Why, if a reason was given.
        error: Option<ErrorRecord>,
    },
    /// `discarded` (out of attempts or unrecoverable), with the error appended.
    Discard {
        /// Why.
        error: ErrorRecord,
    },
}

/// What `rescue_expired` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RescueReport {
    /// Jobs made `retryable` again.
    pub retried: u64,
    /// Jobs `discarded` because their attempts were used up.
    pub discarded: u64,
}

/// What `promote_due` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromoteReport {
    /// Jobs made `available`.
    pub promoted: u64,
    /// The queues they are on (each once), so their producers can be woken.
    pub queues: Vec<String>,
    /// The earliest `run_at` among `scheduled` and `retryable` jobs left after this pass
    /// (not after `now` unless the pass stopped at its limit); `None` when there are none.
    /// The scheduler sleeps until then instead of polling.
    pub next_due: Option<DateTime<Utc>>,
}

/// What `cancel` found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CancelResult {
    /// The job is now `cancelled` (a running attempt's outcome will be ignored).
    Cancelled(JobRow),
    /// The job was already final; nothing changed.
    AlreadyFinal(JobRow),
    /// No job has that id.
    NotFound,
}

/// What [`Store::delete`](crate::Store::delete) did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DeleteResult {
    /// The job is gone; this is what it was.
    Deleted(JobRow),
    /// The job is running and was left alone: cancel it first.
    Running(JobRow),
    /// No job has that id.
    NotFound,
}

/// The error every store records when it rescues a job whose lease expired.
pub fn rescue_message(worker: Option<&str>) -> String {
    format!(
        "lease expired: worker {} stopped heartbeating (crashed, or lost the database) before recording an outcome",
        worker.unwrap_or("?")
    )
}
