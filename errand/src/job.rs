//! The [`Job`] trait and what a run returns.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{JobContext, JobError, JobOptions};

/// A unit of background work: a serde struct with a stable kind name and a `run` method.
///
/// The struct is serialized (JSON) at enqueue and deserialized by the worker that runs it,
/// so renaming fields is a data migration, and `KIND` must never change once jobs are stored.
///
/// ```
/// use errand::{Job, JobContext, JobError, JobOptions, Outcome};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone)]
/// struct AppState { smtp_host: String }
///
/// #[derive(Serialize, Deserialize)]
/// struct SendEmail { to: String }
///
/// impl Job for SendEmail {
///     const KIND: &'static str = "send_email";
///     const QUEUE: &'static str = "mail";
///     type State = AppState;
///
///     async fn run(self, cx: JobContext<AppState>) -> Result<Outcome, JobError> {
///         if self.to.is_empty() {
///             return Ok(Outcome::discard("no recipient"));
///         }
///         let _host = &cx.state().smtp_host; // …send the mail…
///         Ok(Outcome::Complete)
///     }
///
///     fn options(&self) -> JobOptions {
///         JobOptions::new().max_attempts(5).unique_key(format!("welcome:{}", self.to))
///     }
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// The name stored with each job and used to find its handler. Unique per worker;
    /// never rename it while such jobs may be stored.
    const KIND: &'static str;

    /// The queue jobs of this type go to unless [`options`](Self::options) or the enqueue
    /// call name another. A worker that registers the type but does not work this queue
    /// warns at [`build`](crate::WorkerBuilder::build).
    const QUEUE: &'static str = crate::DEFAULT_QUEUE;

    /// Application state handed to every run (a pool, a client, config), cloned per job.
    /// Use `()` when the job needs none.
    type State: Clone + Send + Sync + 'static;

    /// Does the work. An `Err` is a failure retried by the job's backoff (see [`JobError`]
    /// to discard or cancel instead); a panic or a timeout counts as a failure too.
    fn run(
        self,
        cx: JobContext<Self::State>,
    ) -> impl Future<Output = Result<Outcome, JobError>> + Send;

    /// Options for this job (priority, attempts, backoff, timeout, unique key derived from
    /// its fields, tags…); the enqueue call's [`JobOptions`] override them, setting by setting
    /// (see [`JobOptions`] for the rule).
    fn options(&self) -> JobOptions {
        JobOptions::new()
    }
}

/// A job whose result has a type: the job returns it with [`Outcome::output`] and anyone reads
/// it back typed with [`Client::output`](crate::Client::output) or
/// [`Client::wait_output`](crate::Client::wait_output), which check that the job is of this
/// kind. (Workflows will read a dependency's output through it: issue 17.)
///
/// ```
/// use errand::{Job, JobContext, JobError, Outcome, Produces};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct FetchPage { url: String }
///
/// #[derive(Serialize, Deserialize)]
/// struct Page { status: u16, bytes: usize }
///
/// impl Job for FetchPage {
///     const KIND: &'static str = "fetch_page";
///     type State = ();
///     async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> {
///         let page = Page { status: 200, bytes: self.url.len() }; // …fetch it…
///         Ok(Outcome::output::<Self>(&page))
///     }
/// }
///
/// impl Produces for FetchPage {
///     type Output = Page;
/// }
/// ```
pub trait Produces: Job {
    /// What a completed run returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

/// How a run ended, as a value: the runtime records it on the job.
///
/// **`Outcome::cancel`/`discard` or `JobError::cancel`/`discard`?** They end the job the same
/// way (`cancelled` or `discarded`, the reason recorded). Return an `Outcome` when ending is
/// the job's decision on the happy path (`Ok(Outcome::cancel("account closed"))`); use
/// [`JobError::discard`](crate::JobError::discard) / [`JobError::cancel`](crate::JobError::cancel)
/// where an error says retrying is pointless, typically with `map_err` and `?`
/// (`parse(&self.csv).map_err(JobError::discard)?`). Either way the job is not retried, and
/// `Snooze` and `Retry` exist only as outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Done: the job becomes `completed`.
    Complete,
    /// Done with a result: the job becomes `completed` and the value is stored with it, for
    /// [`Client::result`](crate::Client::result) and [`Client::wait`](crate::Client::wait)
    /// (in any process). Made by [`Outcome::complete_with`].
    CompleteWith(JobResult),
    /// Try again: after `after`, or after the job's backoff when `None`. Uses an attempt and
    /// records `reason` in the error history; with no attempts left the job is discarded.
    Retry {
        /// Delay before the next attempt (`None`: the job's backoff).
        after: Option<Duration>,
        /// Recorded in the error history.
        reason: String,
    },
    /// Run again after this delay without using an attempt (waiting on something external).
    Snooze(Duration),
    /// Stop for good: the job becomes `cancelled`, with the reason recorded.
    Cancel(String),
    /// Give up: the job becomes `discarded`, with the reason recorded (retryable by hand).
    Discard(String),
}

impl Outcome {
    /// Complete and store `value` with the job (serialized to JSON now).
    ///
    /// A value that cannot be stored — its `Serialize` fails, it holds NaN or an infinite
    /// float, it nests deeper than 127 levels, or it is over
    /// [`MAX_RESULT_LEN`](errand_core::MAX_RESULT_LEN) (1 MiB) of JSON — discards the job
    /// with the reason: the work is done, and retrying would repeat it. Keep results small
    /// (counts, ids, where a big output was put).
    ///
    /// ```
    /// use errand::{Job, JobContext, JobError, Outcome};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Resize { image: String }
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Resized { url: String, bytes: u64 }
    ///
    /// impl Job for Resize {
    ///     const KIND: &'static str = "resize";
    ///     type State = ();
    ///     async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> {
    ///         let out = Resized { url: format!("{}-small", self.image), bytes: 1024 };
    ///         Ok(Outcome::complete_with(&out))
    ///     }
    /// }
    /// ```
    pub fn complete_with<T: Serialize + ?Sized>(value: &T) -> Self {
        Outcome::CompleteWith(JobResult::new(value))
    }

    /// Done with the output of job type `J` (see [`Produces`]): the same as
    /// [`complete_with`](Self::complete_with), with the value's type checked against the
    /// job's at compile time (`Outcome::output::<Self>(&page)`).
    pub fn output<J: Produces>(value: &J::Output) -> Self {
        Outcome::complete_with(value)
    }

    /// Retry after the job's backoff.
    pub fn retry(reason: impl Into<String>) -> Self {
        Outcome::Retry {
            after: None,
            reason: reason.into(),
        }
    }

    /// Retry after `after`.
    pub fn retry_after(after: Duration, reason: impl Into<String>) -> Self {
        Outcome::Retry {
            after: Some(after),
            reason: reason.into(),
        }
    }

    /// Run again after `after` without using an attempt.
    pub fn snooze(after: Duration) -> Self {
        Outcome::Snooze(after)
    }

    /// Cancel with a reason.
    pub fn cancel(reason: impl Into<String>) -> Self {
        Outcome::Cancel(reason.into())
    }

    /// Discard with a reason.
    pub fn discard(reason: impl Into<String>) -> Self {
        Outcome::Discard(reason.into())
    }
}

/// A job's result on its way to the store (see [`Outcome::complete_with`]): its JSON, or why
/// it cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult(Result<String, String>);

impl JobResult {
    fn new<T: Serialize + ?Sized>(value: &T) -> Self {
        let json = crate::payload::check(value)
            .map_err(|p| format!("the result holds a value JSON cannot carry: {p}"))
            .and_then(|()| {
                serde_json::to_string(value)
                    .map_err(|e| format!("the result does not serialize: {e}"))
            })
            .and_then(|json| {
                if json.len() > errand_core::MAX_RESULT_LEN {
                    Err(format!(
                        "the result is {} bytes of JSON, over the limit of {} (MAX_RESULT_LEN): \
                         store a big output elsewhere and return where it is",
                        json.len(),
                        errand_core::MAX_RESULT_LEN
                    ))
                } else if crate::client::has_escaped_nul(&json) {
                    Err(
                        "the result holds a NUL character (U+0000), which Postgres cannot \
                         store"
                            .to_owned(),
                    )
                } else {
                    Ok(json)
                }
            });
        JobResult(json)
    }

    /// The result as JSON text, or why it cannot be stored.
    pub fn json(&self) -> Result<&str, &str> {
        self.0.as_deref().map_err(String::as_str)
    }

    pub(crate) fn into_json(self) -> Result<String, String> {
        self.0
    }
}
