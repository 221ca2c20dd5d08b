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
//!         errand::JobOptions::default().max_attempts(3)
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
//! For the whole path — enqueue, claim, run, record — run a [`crate::Worker`] on a
//! [`crate::MemoryStore`] (or a SQLite file in a temporary directory): they keep the same
//! contract as the production stores.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use chrono::Utc;
use errand_core::{JobRow, JobState};

use crate::client::prepare;
use crate::{EnqueueOptions, Job, JobContext, JobError, Outcome};

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
        EnqueueOptions::new(),
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
    let row = JobRow {
        state: JobState::Running,
        attempt,
        attempted_at: Some(now),
        attempted_by: Some("errand::testing".into()),
        ..new.into_row(1, now)
    };
    let cx = JobContext::new(state, Arc::new(row), Arc::new(AtomicBool::new(false)));
    job.run(cx).await
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
