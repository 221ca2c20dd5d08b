use std::fmt;
use std::str::FromStr;

/// Where a job is in its lifecycle: `scheduled` or `available` until claimed, `running`,
/// then `completed`, `retryable` (back to `available` when its backoff is over), `discarded`
/// or `cancelled`. A workflow step starts `pending` while jobs it depends on have not
/// completed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobState {
    /// A workflow step waiting for the jobs it depends on: not claimable, not counted as
    /// available; it becomes `available` (or `scheduled`) when the last one completes.
    Pending,
    /// Waiting for its `run_at` (delayed, or snoozed).
    Scheduled,
    /// Ready to be claimed.
    Available,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Failed; waits for its backoff before it becomes available again.
    Retryable,
    /// Ran to success. Final.
    Completed,
    /// Out of attempts or unrecoverable. Final, but can be retried by hand.
    Discarded,
    /// Cancelled by the job or an operator. Final, but can be retried by hand.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 8] = [
        JobState::Pending,
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
        JobState::Completed,
        JobState::Discarded,
        JobState::Cancelled,
    ];

    /// The name stored in the database and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Completed => "completed",
            JobState::Discarded => "discarded",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job will never run again unless retried by hand.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Discarded | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`JobState::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown job state '{0}': expected one of pending, scheduled, available, running, retryable, completed, discarded, cancelled")]
pub struct ParseStateError(pub String);

impl FromStr for JobState {
    type Err = ParseStateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseStateError(s.to_owned()))
    }
}
