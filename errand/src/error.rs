//! Errors: what a job returns when it fails, and what enqueueing or running a worker can fail with.

use std::fmt;

use errand_core::JobId;
pub use errand_core::StoreError;

/// What a failed run returns. Built from any error with `?`; by default the job is retried
/// after its backoff. [`JobError::discard`] and [`JobError::cancel`] end it instead.
///
/// Like `anyhow::Error`, it does not implement `std::error::Error` itself, so that every
/// error type converts into it with `?`.
pub struct JobError {
    message: String,
    action: FailAction,
}

/// What the runtime does with a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailAction {
    Retry,
    Discard,
    Cancel,
}

impl JobError {
    /// A failure with a message, retried by policy.
    pub fn msg(message: impl fmt::Display) -> Self {
        JobError {
            message: message.to_string(),
            action: FailAction::Retry,
        }
    }

    /// An unrecoverable failure: the job is discarded now, whatever attempts remain.
    /// Use with `map_err`: `parse(x).map_err(JobError::discard)?`.
    pub fn discard(err: impl fmt::Display) -> Self {
        JobError {
            message: err.to_string(),
            action: FailAction::Discard,
        }
    }

    /// The job should not run again: it is cancelled now.
    pub fn cancel(err: impl fmt::Display) -> Self {
        JobError {
            message: err.to_string(),
            action: FailAction::Cancel,
        }
    }

    /// The message recorded in the job's error history.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn action(&self) -> FailAction {
        self.action
    }
}

impl<E> From<E> for JobError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Self {
        // Keep the whole cause chain: "outer: inner: root".
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        JobError::msg(message)
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError")
            .field("message", &self.message)
            .field("action", &self.action)
            .finish()
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why an enqueue wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// An option is out of range; the message says which and what is allowed.
    #[error("invalid job option `{option}`: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The job could not be serialized to JSON.
    #[error("job of kind '{kind}' could not be serialized to JSON: {source}")]
    Serialize {
        /// The job's kind.
        kind: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The serialized job is larger than the client allows.
    #[error("job of kind '{kind}' is {size} bytes serialized, over the {limit}-byte limit: store large data elsewhere and enqueue a reference, or raise Client::max_payload_bytes")]
    PayloadTooLarge {
        /// The job's kind.
        kind: &'static str,
        /// Its serialized size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A string in the serialized job holds a NUL character (U+0000), which PostgreSQL
    /// cannot store in JSON; refused on every store alike, so jobs move between stores.
    #[error("job of kind '{kind}' holds a NUL character (U+0000) in a string, which PostgreSQL cannot store: strip it, or carry binary data encoded (e.g. base64)")]
    NulInPayload {
        /// The job's kind.
        kind: &'static str,
    },
    /// A float in the job is NaN or infinite: JSON has no such numbers (serde_json writes
    /// them as `null`, which would not read back as the float).
    #[error("job of kind '{kind}' holds {value} at {at}, which JSON cannot carry (it would be stored as null and the job would not deserialize): use a finite number, or an Option set to None")]
    NonFiniteNumber {
        /// The job's kind.
        kind: &'static str,
        /// The value (NaN, inf or -inf).
        value: f64,
        /// Where: the field, when known.
        at: String,
    },
    /// The job nests arrays and objects deeper than [`crate::MAX_PAYLOAD_DEPTH`] levels,
    /// more than serde_json reads back.
    #[error("job of kind '{kind}' is nested deeper than {limit} levels of arrays and objects, more than serde_json reads back: flatten it, or store the document elsewhere and enqueue a reference")]
    TooDeep {
        /// The job's kind.
        kind: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The workflow cannot be enqueued as given (a name, a cycle, a dependency on a step
    /// that does not exist…); nothing was written.
    #[error(transparent)]
    Workflow(#[from] errand_core::WorkflowError),
    /// The store failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`Client::result`](crate::Client::result) or [`Client::wait`](crate::Client::wait)
/// has no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// No job has this id.
    #[error("no job {0}: it was never enqueued here, or it was deleted or pruned")]
    NotFound(JobId),
    /// The job did not reach a final state in time; it goes on.
    #[error(
        "job {id} did not end within {} ms (it is {state}): wait longer, or look at it with \
         `errand jobs show {id}`",
        waited.as_millis()
    )]
    TimedOut {
        /// The job.
        id: JobId,
        /// Its state when the wait gave up.
        state: errand_core::JobState,
        /// How long the wait lasted.
        waited: std::time::Duration,
    },
    /// The stored result is not of the type asked for.
    #[error(transparent)]
    Type(#[from] errand_core::ResultTypeError),
    /// The job is of another kind than the one whose output was asked for
    /// ([`Client::output`](crate::Client::output)).
    #[error(
        "job {id} is of kind {found}, not {expected}: ask for the output of the job type that \
         enqueued it"
    )]
    Kind {
        /// The job.
        id: JobId,
        /// The kind asked for (`J::KIND`).
        expected: &'static str,
        /// The job's kind.
        found: String,
    },
    /// The job ended without an output: discarded, cancelled, or completed without a value
    /// ([`Client::wait_output`](crate::Client::wait_output)).
    #[error(
        "job {id} ended {state} without an output{}: see `errand jobs show {id}`",
        reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    )]
    NoOutput {
        /// The job.
        id: JobId,
        /// How it ended.
        state: errand_core::JobState,
        /// Its last recorded error, if any.
        reason: Option<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a worker could not be built or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Two job types registered the same `KIND`.
    #[error("job kind '{0}' is registered twice: each Job::KIND must be unique within a worker")]
    DuplicateKind(&'static str),
    /// A kind name is empty or too long.
    #[error("job kind '{kind}' is invalid: {reason}")]
    InvalidKind {
        /// The kind.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No queue to work on.
    #[error(
        "the worker has no queues: add at least one with WorkerBuilder::queue(name, concurrency)"
    )]
    NoQueues,
    /// A queue is configured wrongly.
    #[error("queue '{queue}' is invalid: {reason}")]
    InvalidQueue {
        /// The queue.
        queue: String,
        /// What is wrong.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid worker setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A cron entry is configured wrongly (see [`crate::WorkerBuilder::cron`]).
    #[error("cron entry '{name}' is invalid: {reason}")]
    InvalidCron {
        /// The entry's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The store is gone from under the running worker (a SQLite file deleted, replaced or
    /// truncated while open); the worker shut down instead of running on.
    #[error("the worker stopped: {reason}")]
    StoreLost {
        /// What happened to the store, and what to do.
        reason: String,
        /// What the shutdown did.
        report: crate::ShutdownReport,
    },
    /// No job types registered.
    #[error("the worker has no job types: register them with WorkerBuilder::register::<T>()")]
    NoJobs,
}
