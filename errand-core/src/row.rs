use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Backoff, JobState};

/// A job's id: assigned by the store, increasing in insertion order.
pub type JobId = i64;

/// One entry of a job's error history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The attempt that failed (1-based).
    pub attempt: i32,
    /// When the failure was recorded.
    pub at: DateTime<Utc>,
    /// What went wrong, truncated to [`crate::MAX_ERROR_LEN`] bytes.
    pub message: String,
    /// Set when the job panicked: `message` holds the panic text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub panic: bool,
}

impl ErrorRecord {
    /// A record for `attempt` at `at`, truncating `message` to [`crate::MAX_ERROR_LEN`] bytes
    /// and replacing any NUL character with U+FFFD.
    pub fn new(attempt: i32, at: DateTime<Utc>, message: impl Into<String>) -> Self {
        let mut message = message.into();
        // PostgreSQL cannot store U+0000 in text or JSON: a message holding one (text read
        // from a binary source, say) would make the outcome unwritable.
        if message.contains('\0') {
            message = message.replace('\0', "\u{fffd}");
        }
        if message.len() > crate::MAX_ERROR_LEN {
            let mut cut = crate::MAX_ERROR_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("… (truncated)");
        }
        ErrorRecord {
            attempt,
            at,
            message,
            panic: false,
        }
    }

    /// Marks the record as coming from a panic.
    pub fn panicked(mut self) -> Self {
        self.panic = true;
        self
    }
}

/// A job as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    /// Store-assigned id.
    pub id: JobId,
    /// The job type's `Job::KIND`.
    pub kind: String,
    /// Queue it runs on.
    pub queue: String,
    /// The serialized job (JSON text), kept exactly as enqueued.
    pub args: String,
    /// Lifecycle state.
    pub state: JobState,
    /// Lower runs first; 0 is the default and the highest.
    pub priority: i16,
    /// Attempts started so far (the running attempt included).
    pub attempt: i32,
    /// Attempts allowed before the job is discarded.
    pub max_attempts: i32,
    /// Earliest time the job may run.
    pub run_at: DateTime<Utc>,
    /// When it was inserted.
    pub created_at: DateTime<Utc>,
    /// When the latest attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    pub finalized_at: Option<DateTime<Utc>>,
    /// While running: when the holder's lease ends unless extended.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Id of the worker that made the latest attempt.
    pub attempted_by: Option<String>,
    /// Every recorded failure, oldest first.
    pub errors: Vec<ErrorRecord>,
    /// Free-form labels for operators.
    pub tags: Vec<String>,
    /// Uniqueness key among non-final jobs, if any.
    pub unique_key: Option<String>,
    /// Backoff chosen at enqueue, overriding the job type's.
    pub backoff: Option<Backoff>,
    /// Timeout chosen at enqueue in milliseconds, overriding the job type's.
    pub timeout_ms: Option<i64>,
}

impl JobRow {
    /// The reference that fences state changes of this attempt.
    pub fn lease_ref(&self) -> crate::LeaseRef {
        crate::LeaseRef {
            id: self.id,
            attempt: self.attempt,
        }
    }
}
