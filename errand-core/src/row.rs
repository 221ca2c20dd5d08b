use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Backoff, JobState, UniqueStates};

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

/// `text` as every store can keep it: NULs replaced by U+FFFD (PostgreSQL cannot store
/// U+0000 in text or JSON, so a message read from a binary source would make the write
/// fail), and cut to `max` bytes on a character boundary, `mark` appended when cut.
fn storable(mut text: String, max: usize, mark: &str) -> String {
    if text.contains('\0') {
        text = text.replace('\0', "\u{fffd}");
    }
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(mark);
    }
    text
}

impl ErrorRecord {
    /// A record for `attempt` at `at`, truncating `message` to [`crate::MAX_ERROR_LEN`] bytes
    /// and replacing any NUL character with U+FFFD.
    pub fn new(attempt: i32, at: DateTime<Utc>, message: impl Into<String>) -> Self {
        let message = storable(message.into(), crate::MAX_ERROR_LEN, "… (truncated)");
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
///
/// `#[non_exhaustive]`: columns may be added without a breaking change. A store builds one
/// with [`JobRow::new`], then sets each field it read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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
    /// Unique key, if any: no other job holds it while this one is in a state of
    /// `unique_states`.
    pub unique_key: Option<String>,
    /// The states in which the job holds `unique_key`.
    #[serde(default)]
    pub unique_states: UniqueStates,
    /// How long after finishing a final state of `unique_states` still holds the key (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_for_ms: Option<i64>,
    /// Backoff chosen at enqueue, overriding the job type's.
    pub backoff: Option<Backoff>,
    /// Timeout chosen at enqueue in milliseconds, overriding the job type's.
    pub timeout_ms: Option<i64>,
    /// The job's partition key, if any (see [`NewJob::partition_key`](crate::NewJob)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// What the job returned when it completed (JSON text), if it returned a value
    /// (`Outcome::complete_with`). Read it typed with [`JobRow::result_as`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The latest progress the job reported (`JobContext::progress`), kept after it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Set when a column could not be read (hand-edited or written by a faulty tool): what
    /// was wrong, naming the column and quoting what it held. The field read as its default
    /// (empty history, no tags, no backoff…). A claimed job in this condition is not run: the
    /// store discards it with this message recorded, and the rest of its batch runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<String>,
}

/// How far a running job says it got, as stored with the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The attempt that reported it.
    pub attempt: i32,
    /// Per cent done, 0 to 100; `None` when the job gave no usable figure (NaN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// What it is doing, at most [`crate::MAX_PROGRESS_MESSAGE_LEN`] bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When it was reported.
    pub at: DateTime<Utc>,
}

impl Progress {
    /// A report by `attempt` at `at`: `percent` is clamped to 0–100 (NaN gives none) and
    /// `message` cut to [`crate::MAX_PROGRESS_MESSAGE_LEN`] bytes, with NULs replaced, so any
    /// input stores.
    pub fn new(attempt: i32, at: DateTime<Utc>, percent: f64, message: impl Into<String>) -> Self {
        let message = storable(message.into(), crate::MAX_PROGRESS_MESSAGE_LEN, "…");
        Progress {
            attempt,
            percent: (!percent.is_nan()).then(|| percent.clamp(0.0, 100.0)),
            message,
            at,
        }
    }
}

/// Reads the columns of one stored row, keeping going past a column that cannot be read:
/// the column reads as a fallback value and the problem is noted (see [`JobRow::corrupt`]).
/// Store decoders use it so one bad row affects only itself.
#[derive(Debug, Default)]
pub struct RowReader {
    problems: Vec<String>,
}

/// How much of a bad column's stored text a problem quotes.
const QUOTE: usize = 200;

fn quote(text: &str) -> String {
    if text.len() <= QUOTE {
        return text.to_owned();
    }
    let mut cut = QUOTE;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

impl RowReader {
    /// A value the driver read, or `fallback` with the problem noted.
    pub fn value<T, E: std::fmt::Display>(
        &mut self,
        column: &str,
        read: Result<T, E>,
        fallback: T,
    ) -> T {
        read.unwrap_or_else(|e| {
            self.problems.push(format!("column {column}: {e}"));
            fallback
        })
    }

    /// A JSON column, or `T::default()` with the problem (and the stored text) noted.
    pub fn json<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        column: &str,
        text: &str,
    ) -> T {
        serde_json::from_str(text).unwrap_or_else(|e| {
            self.problems
                .push(format!("column {column}: {e} (stored: {})", quote(text)));
            T::default()
        })
    }

    /// A nullable JSON column.
    pub fn json_opt<T: serde::de::DeserializeOwned>(
        &mut self,
        column: &str,
        text: Option<&str>,
    ) -> Option<T> {
        let text = text?;
        match serde_json::from_str(text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problems
                    .push(format!("column {column}: {e} (stored: {})", quote(text)));
                None
            }
        }
    }

    /// Notes a problem found otherwise.
    pub fn problem(&mut self, message: String) {
        self.problems.push(message);
    }

    /// What went wrong, if anything: the value for [`JobRow::corrupt`].
    pub fn finish(self) -> Option<String> {
        if self.problems.is_empty() {
            None
        } else {
            Some(self.problems.join("; "))
        }
    }
}

impl JobRow {
    /// The job's result read as `T`: `Ok(None)` when it has none (not completed, or
    /// completed without a value), an error naming the job when the stored value is not a `T`.
    pub fn result_as<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, ResultTypeError> {
        let Some(text) = &self.result else {
            return Ok(None);
        };
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| ResultTypeError {
                id: self.id,
                kind: self.kind.clone(),
                expected: std::any::type_name::<T>(),
                message: e.to_string(),
            })
    }

    /// A row with this id, kind, queue and payload, every other field at its zero value
    /// (available, priority 0, attempt 0, max_attempts 1, times at the Unix epoch, no history,
    /// tags, key, backoff or timeout): a store sets the fields it read.
    pub fn new(
        id: JobId,
        kind: impl Into<String>,
        queue: impl Into<String>,
        args: impl Into<String>,
    ) -> Self {
        JobRow {
            id,
            kind: kind.into(),
            queue: queue.into(),
            args: args.into(),
            state: JobState::Available,
            priority: 0,
            attempt: 0,
            max_attempts: 1,
            run_at: DateTime::<Utc>::UNIX_EPOCH,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            attempted_at: None,
            finalized_at: None,
            lease_expires_at: None,
            attempted_by: None,
            errors: Vec::new(),
            tags: Vec::new(),
            unique_key: None,
            unique_states: UniqueStates::NOT_FINAL,
            unique_for_ms: None,
            backoff: None,
            timeout_ms: None,
            partition_key: None,
            result: None,
            progress: None,
            corrupt: None,
        }
    }

    /// For a claimed job that could not be read ([`JobRow::corrupt`]): the error its store
    /// records when it discards the job instead of running it (the same on every store).
    /// `None` for a readable job.
    pub fn unreadable_error(&self, now: DateTime<Utc>) -> Option<ErrorRecord> {
        let problem = self.corrupt.as_deref()?;
        Some(ErrorRecord::new(
            self.attempt,
            now,
            format!(
                "job could not be read and was discarded without running: {problem}. Repair \
                 the column (or the tool that wrote it), then retry the job"
            ),
        ))
    }

    /// The payload deserialized: `row.decode::<SendEmail>()` for a job of that type.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.args)
    }

    /// The reference that fences state changes of this attempt.
    pub fn lease_ref(&self) -> crate::LeaseRef {
        crate::LeaseRef {
            id: self.id,
            attempt: self.attempt,
        }
    }
}

/// A job's stored result does not read as the type asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the result of job {id} ({kind}) does not read as {expected}: {message}; ask for the type \
     its job returns with Outcome::complete_with"
)]
pub struct ResultTypeError {
    /// The job.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// The type asked for.
    pub expected: &'static str,
    /// What serde said.
    pub message: String,
}
