//! Testing an application's jobs without a worker or a store.
//!
//! [`perform`] runs one job the way a worker would — serialized at enqueue, deserialized
//! and run with the application state — and returns what `run` returned, so a unit test
//! can assert on the outcome:
//!
//! ```
//! use errand::{Job, JobContext, JobError, Outcome};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Charge { cents: u64 }
//!
//! impl Job for Charge {
//!     const KIND: &'static str = "charge";
//!     type State = ();
//!     async fn run(self, cx: JobContext<()>) -> Result<Outcome, JobError> {
//!         if self.cents == 0 {
//!             return Ok(Outcome::discard("nothing to charge"));
//!         }
//!         if !cx.is_last_attempt() {
//!             return Err(JobError::msg("card network down"));
//!         }
//!         Ok(Outcome::Complete)
//!     }
//!     fn options(&self) -> errand::JobOptions {
//!         errand::JobOptions::new().max_attempts(3)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use errand::testing::{perform, perform_attempt};
//! assert_eq!(perform(Charge { cents: 0 }, ()).await.unwrap(), Outcome::discard("nothing to charge"));
//! assert!(perform(Charge { cents: 500 }, ()).await.is_err());
//! assert_eq!(perform_attempt(Charge { cents: 500 }, (), 3).await.unwrap(), Outcome::Complete);
//! # }
//! ```
//!
//! For the whole path — enqueue, claim, run, record — use a [`crate::Worker`] on a
//! [`crate::MemoryStore`] (or a SQLite file in a temporary directory): they keep the same
//! contract as the production stores. [`crate::Worker::drain`] runs its jobs inline until
//! none is left ([`InlineClient`] enqueues and drains in one call), and [`enqueued`],
//! [`assert_enqueued`] and [`refute_enqueued`] look at what code under test enqueued, typed:
//!
//! ```
//! # use errand::{Client, Job, JobContext, JobError, MemoryStore, Outcome};
//! # use serde::{Deserialize, Serialize};
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Welcome { user: u64 }
//! # impl Job for Welcome {
//! #     const KIND: &'static str = "welcome";
//! #     type State = ();
//! #     async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use errand::testing::{assert_enqueued, enqueued, refute_enqueued};
//! let store = MemoryStore::new();
//! Client::new(store.clone()).enqueue(Welcome { user: 7 }).await.unwrap();
//! assert_eq!(enqueued::<Welcome>(&store).all().await, vec![Welcome { user: 7 }]);
//! assert_enqueued::<Welcome>(&store, |w| w.user == 7).await;
//! refute_enqueued::<Welcome>(&store, |w| w.user == 8).await;
//! # }
//! ```

use std::sync::Arc;

use chrono::{DateTime, Utc};
use errand_core::{JobRow, JobState, ListFilter, Store};

pub use crate::inline::InlineClient;

use crate::client::prepare;
use crate::{Job, JobContext, JobError, JobOptions, Outcome};

/// Runs `job` as the first attempt of a freshly enqueued job and returns what `run`
/// returned. Panics, saying why, when the job would be refused at enqueue (invalid options,
/// a payload that does not serialize) or its payload does not deserialize back into `J`
/// (a worker would discard it): those are bugs for the test to catch. The job's timeout is
/// not applied, and a panic in `run` reaches the test as a panic.
pub async fn perform<J: Job>(job: J, state: J::State) -> Result<Outcome, JobError> {
    perform_attempt(job, state, 1).await
}

/// [`perform`] as attempt `attempt` (from 1), for behaviour that depends on
/// [`JobContext::attempt`] or [`JobContext::is_last_attempt`].
pub async fn perform_attempt<J: Job>(
    job: J,
    state: J::State,
    attempt: i32,
) -> Result<Outcome, JobError> {
    let new = match prepare(
        job,
        JobOptions::new(),
        crate::DEFAULT_MAX_PAYLOAD_BYTES,
        Utc::now(),
    ) {
        Ok(new) => new,
        Err(e) => panic!("the job would be refused at enqueue: {e}"),
    };
    let job: J = match serde_json::from_str(&new.args) {
        Ok(job) => job,
        Err(e) => panic!(
            "the payload {} does not deserialize back into {} (a worker would discard it): {e}",
            new.args,
            J::KIND
        ),
    };
    assert!(
        (1..=new.max_attempts).contains(&attempt),
        "attempt {attempt} is outside 1..={} (the job's max_attempts)",
        new.max_attempts
    );
    let now = Utc::now();
    let mut row = new.into_row(1, now);
    row.state = JobState::Running;
    row.attempt = attempt;
    row.attempted_at = Some(now);
    row.attempted_by = Some("errand::testing".into());
    let cx = JobContext::new(state, Arc::new(row), Arc::default());
    job.run(cx).await
}

/// Jobs of type `J` waiting in a store (scheduled, available or retryable), decoded; narrow
/// with [`EnqueuedQuery::queue`], [`EnqueuedQuery::due_by`] and [`EnqueuedQuery::matching`], then read
/// with [`EnqueuedQuery::all`] or [`EnqueuedQuery::rows`]. Panics when a stored payload of kind
/// `J::KIND` does not decode into `J` (a test should see that).
pub fn enqueued<J: Job>(store: &impl Store) -> EnqueuedQuery<'_, J> {
    EnqueuedQuery {
        store,
        queue: None,
        due_by: None,
        matching: None,
    }
}

/// A test on a job's payload.
type Predicate<J> = Box<dyn Fn(&J) -> bool + Send + Sync>;

/// A query of enqueued jobs of one type; see [`enqueued`].
pub struct EnqueuedQuery<'s, J> {
    store: &'s dyn Store,
    queue: Option<String>,
    due_by: Option<DateTime<Utc>>,
    matching: Option<Predicate<J>>,
}

impl<J> std::fmt::Debug for EnqueuedQuery<'_, J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnqueuedQuery")
            .field("queue", &self.queue)
            .field("due_by", &self.due_by)
            .finish_non_exhaustive()
    }
}

impl<J: Job> EnqueuedQuery<'_, J> {
    /// Only jobs on `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only jobs due to run at or before `at` (`run_at <= at`).
    pub fn due_by(mut self, at: DateTime<Utc>) -> Self {
        self.due_by = Some(at);
        self
    }

    /// Only jobs whose payload satisfies `predicate`.
    pub fn matching(mut self, predicate: impl Fn(&J) -> bool + Send + Sync + 'static) -> Self {
        self.matching = Some(Box::new(predicate));
        self
    }

    /// The matching jobs with their rows, oldest first.
    pub async fn rows(&self) -> Vec<(JobRow, J)> {
        let mut filter = ListFilter::new()
            .kind(J::KIND)
            .state(JobState::Scheduled)
            .state(JobState::Available)
            .state(JobState::Retryable)
            .limit(10_000);
        if let Some(q) = &self.queue {
            filter = filter.queue(q.clone());
        }
        let mut rows = self
            .store
            .list(&filter)
            .await
            .unwrap_or_else(|e| panic!("cannot list enqueued jobs: {e}"));
        rows.reverse();
        rows.into_iter()
            .filter(|r| self.due_by.is_none_or(|at| r.run_at <= at))
            .map(|r| {
                let job: J = r.decode().unwrap_or_else(|e| {
                    panic!(
                        "job {} of kind '{}' does not decode: {e}: {}",
                        r.id,
                        J::KIND,
                        r.args
                    )
                });
                (r, job)
            })
            .filter(|(_, j)| self.matching.as_ref().is_none_or(|m| m(j)))
            .collect()
    }

    /// The matching jobs, decoded, oldest first.
    pub async fn all(&self) -> Vec<J> {
        self.rows().await.into_iter().map(|(_, j)| j).collect()
    }
}

/// Panics unless a job of type `J` whose payload satisfies `predicate` is enqueued; returns
/// the first such job. The message lists what is enqueued of that kind.
pub async fn assert_enqueued<J: Job>(
    store: &impl Store,
    predicate: impl Fn(&J) -> bool + Send + Sync + 'static,
) -> J {
    let all = enqueued::<J>(store).rows().await;
    let listing: Vec<String> = all
        .iter()
        .map(|(r, _)| format!("{}: {}", r.id, r.args))
        .collect();
    match all.into_iter().find(|(_, j)| predicate(j)) {
        Some((_, j)) => j,
        None => panic!(
            "no enqueued job of kind '{}' matches; enqueued of that kind: {listing:?}",
            J::KIND
        ),
    }
}

/// Panics if a job of type `J` whose payload satisfies `predicate` is enqueued, naming it.
pub async fn refute_enqueued<J: Job>(
    store: &impl Store,
    predicate: impl Fn(&J) -> bool + Send + Sync + 'static,
) {
    if let Some((row, _)) = enqueued::<J>(store)
        .rows()
        .await
        .into_iter()
        .find(|(_, j)| predicate(j))
    {
        panic!(
            "job {} of kind '{}' is enqueued, and should not be: {}",
            row.id,
            J::KIND,
            row.args
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// Serializes one field under a name it does not read back.
    #[derive(Serialize, Deserialize)]
    struct Lopsided {
        #[serde(rename(serialize = "a", deserialize = "b"))]
        value: u32,
    }

    impl Job for Lopsided {
        const KIND: &'static str = "lopsided";
        type State = ();
        async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> {
            Ok(Outcome::Complete)
        }
    }

    #[derive(Serialize, Deserialize)]
    struct SeesItsContext;

    impl Job for SeesItsContext {
        const KIND: &'static str = "sees_its_context";
        type State = &'static str;
        async fn run(self, cx: JobContext<&'static str>) -> Result<Outcome, JobError> {
            assert_eq!(*cx.state(), "app");
            assert_eq!(cx.kind(), "sees_its_context");
            assert_eq!(cx.queue(), "default");
            Ok(Outcome::retry_after(
                std::time::Duration::from_secs(cx.attempt() as u64),
                "again",
            ))
        }
    }

    #[tokio::test]
    async fn the_job_sees_its_state_attempt_and_options() {
        assert_eq!(
            perform_attempt(SeesItsContext, "app", 2).await.unwrap(),
            Outcome::retry_after(std::time::Duration::from_secs(2), "again")
        );
    }

    #[tokio::test]
    #[should_panic(expected = "does not deserialize back into lopsided")]
    async fn a_payload_that_does_not_round_trip_fails_the_test() {
        let _ = perform(Lopsided { value: 1 }, ()).await;
    }

    #[tokio::test]
    #[should_panic(expected = "attempt 21 is outside 1..=20 (the job's max_attempts)")]
    async fn an_attempt_past_max_attempts_fails_the_test() {
        assert_eq!(crate::DEFAULT_MAX_ATTEMPTS, 20);
        let _ = perform_attempt(SeesItsContext, "app", 21).await;
    }
}
