//! The bad-input catalogue: each input leaves a clear error and loses nothing, on every store
//! where it applies.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::*;
use errand::store::Store;
use errand::{Client, Job, JobContext, JobError, JobOptions, JobState, Outcome};
use serde::{Deserialize, Serialize};

/// Panics with a non-string payload.
#[derive(Serialize, Deserialize)]
struct PanicsWithNumber;
impl Job for PanicsWithNumber {
    const KIND: &'static str = "panics_with_number";
    type State = Probe;
    async fn run(self, _cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        std::panic::panic_any(42_u32)
    }
    fn options(&self) -> JobOptions {
        JobOptions::new().max_attempts(1)
    }
}

/// Blocks its thread (never yields) far past its timeout.
#[derive(Serialize, Deserialize)]
struct NeverYields;
impl Job for NeverYields {
    const KIND: &'static str = "never_yields";
    type State = Probe;
    async fn run(self, _cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        std::thread::sleep(Duration::from_millis(1_500));
        Ok(Outcome::Complete)
    }
    fn options(&self) -> JobOptions {
        JobOptions::new()
            .max_attempts(1)
            .timeout(Duration::from_millis(200))
    }
}

/// Fails with a 1 MB message.
#[derive(Serialize, Deserialize)]
struct HugeError;
impl Job for HugeError {
    const KIND: &'static str = "huge_error";
    type State = Probe;
    async fn run(self, _cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        Err(JobError::msg("x".repeat(1024 * 1024)))
    }
    fn options(&self) -> JobOptions {
        JobOptions::new().max_attempts(1)
    }
}

/// Fails with a message holding NUL and other control characters (as text read from a
/// binary source may): PostgreSQL cannot store U+0000 in `text` or `jsonb`.
#[derive(Serialize, Deserialize)]
struct NulError;
impl Job for NulError {
    const KIND: &'static str = "nul_error";
    type State = Probe;
    async fn run(self, _cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        Err(JobError::msg("bad byte \0 here\u{1}\u{7f} end"))
    }
    fn options(&self) -> JobOptions {
        JobOptions::new().max_attempts(1)
    }
}

/// Fails with a message the test's database refuses to store (a constraint or trigger the
/// test adds), standing for any outcome the database rejects outright.
#[derive(Serialize, Deserialize)]
struct Refused;
impl Job for Refused {
    const KIND: &'static str = "refused";
    type State = Probe;
    async fn run(self, _cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        Err(JobError::msg("poison"))
    }
    fn options(&self) -> JobOptions {
        JobOptions::new().max_attempts(1)
    }
}

fn with_bad_jobs<S: Store>(store: S) -> errand::WorkerBuilder<S, Probe> {
    builder(store, Probe::default())
        .register::<PanicsWithNumber>()
        .register::<NeverYields>()
        .register::<HugeError>()
        .register::<NulError>()
        .register::<Refused>()
}

on_every_store!(
    panic_with_non_string_payload_is_recorded,
    job_that_never_yields_times_out_and_worker_goes_on,
    megabyte_error_message_is_truncated_not_rejected,
    error_message_with_a_nul_is_recorded_and_other_outcomes_too,
    odd_queue_names_work_end_to_end,
    far_past_and_far_future_run_at,
    max_attempts_over_the_limit_is_refused,
);

async fn panic_with_non_string_payload_is_recorded<S: Store + Clone>(store: S) {
    let id = Client::new(store.clone())
        .enqueue(PanicsWithNumber)
        .await
        .unwrap()
        .id;
    let worker = with_bad_jobs(store.clone())
        .queue("default", 1)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Discarded).await;
    worker.shutdown().await;
    assert!(row.errors[0].panic);
    assert_eq!(
        row.errors[0].message,
        "job panicked: panic with a non-string payload"
    );
}

async fn job_that_never_yields_times_out_and_worker_goes_on<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let stuck = client.enqueue(NeverYields).await.unwrap().id;
    let worker = with_bad_jobs(store.clone())
        .queue("default", 2)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, stuck, JobState::Discarded).await;
    // The job could only be stopped when its blocking call returned: the record says so.
    let msg = &row.errors[0].message;
    assert!(
        msg.starts_with("job timed out after 200 ms but did not yield, so it ran on for another"),
        "{msg}"
    );
    assert!(msg.contains("cx.blocking"), "{msg}");
    let next = client.enqueue(Echo { n: 1 }).await.unwrap().id;
    wait_state(&store, next, JobState::Completed).await;
    worker.shutdown().await;
}

async fn megabyte_error_message_is_truncated_not_rejected<S: Store + Clone>(store: S) {
    let id = Client::new(store.clone())
        .enqueue(HugeError)
        .await
        .unwrap()
        .id;
    let worker = with_bad_jobs(store.clone())
        .queue("default", 1)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Discarded).await;
    worker.shutdown().await;
    let msg = &row.errors[0].message;
    assert!(msg.len() < 17 * 1024, "kept {} bytes", msg.len());
    assert!(
        msg.starts_with("xxxx") && msg.ends_with("(truncated)"),
        "{}",
        &msg[msg.len() - 40..]
    );
}

/// The outcome is written with the NUL replaced, and outcomes written in the same batch are
/// not held up by it.
async fn error_message_with_a_nul_is_recorded_and_other_outcomes_too<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let bad = client.enqueue(NulError).await.unwrap().id;
    let goods: Vec<_> = client
        .enqueue_many((0..20).map(|n| Echo { n }))
        .await
        .unwrap();
    let worker = with_bad_jobs(store.clone())
        .queue("default", 4)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, bad, JobState::Discarded).await;
    for g in &goods {
        wait_state(&store, g.id, JobState::Completed).await;
    }
    worker.shutdown().await;
    assert_eq!(
        row.errors[0].message,
        "bad byte \u{fffd} here\u{1}\u{7f} end"
    );
}

async fn odd_queue_names_work_end_to_end<S: Store + Clone>(store: S) {
    let queue = "it's; DROP TABLE errand_jobs;-- ünïcödé 队列 \"quoted\"";
    let client = Client::new(store.clone());
    let id = client
        .enqueue_with(Echo { n: 7 }, JobOptions::new().queue(queue))
        .await
        .unwrap()
        .id;
    let worker = builder(store.clone(), Probe::default())
        .queue(queue, 1)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Completed).await;
    worker.shutdown().await;
    assert_eq!(row.queue, queue);
    let listed = client
        .list(&errand::ListFilter::new().queue(queue))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

async fn far_past_and_far_future_run_at<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let past = Utc.with_ymd_and_hms(1970, 1, 2, 0, 0, 0).unwrap();
    let future = Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).unwrap();
    let p = client
        .enqueue_with(Echo { n: 1 }, JobOptions::new().run_at(past))
        .await
        .unwrap()
        .id;
    let f = client
        .enqueue_with(Echo { n: 2 }, JobOptions::new().run_at(future))
        .await
        .unwrap()
        .id;
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 1)
        .build()
        .unwrap()
        .start();
    wait_state(&store, p, JobState::Completed).await;
    worker.shutdown().await;
    let row = store.get(f).await.unwrap().unwrap();
    assert_eq!((row.state, row.run_at), (JobState::Scheduled, future));
}

async fn max_attempts_over_the_limit_is_refused<S: Store + Clone>(store: S) {
    let err = Client::new(store.clone())
        .enqueue_with(Echo { n: 1 }, JobOptions::new().max_attempts(10_001))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("max_attempts") && err.to_string().contains("1 to 10000"),
        "{err}"
    );
    assert_eq!(store.count(&Default::default()).await.unwrap(), 0);
}

/// A payload that is not JSON at all (a hand-edited SQLite row) is discarded and kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_payload_that_is_not_json_is_discarded_and_kept() {
    let (store, _dir) = sqlite().await;
    let job = raw_job("echo", "{not json");
    let id = store.insert(vec![job], Utc::now()).await.unwrap()[0].id;
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 1)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Discarded).await;
    worker.shutdown().await;
    assert_eq!(row.args, "{not json", "payload kept byte for byte");
    assert!(
        row.errors[0]
            .message
            .contains("payload does not deserialize into kind 'echo'"),
        "{}",
        row.errors[0].message
    );
}

/// Postgres stores payloads as jsonb: text that is not JSON is refused at insert, nothing written.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_payload_that_is_not_json_is_refused_at_insert() {
    let store = errand_postgres::testing::scratch_store().await;
    let job = raw_job("echo", "{not json");
    let err = store.insert(vec![job], Utc::now()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid input syntax for type json"),
        "{err}"
    );
    assert_eq!(store.count(&Default::default()).await.unwrap(), 0);
}

/// A kind name with quotes, semicolons and unicode.
#[derive(Serialize, Deserialize)]
struct OddKind;
impl Job for OddKind {
    const KIND: &'static str = "it's; DROP TABLE jobs;-- ünï \"kind\" 种类";
    type State = Probe;
    async fn run(self, cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        cx.state().ran(cx.job_id());
        Ok(Outcome::Complete)
    }
}

/// An empty kind name.
#[derive(Serialize, Deserialize)]
struct EmptyKind;
impl Job for EmptyKind {
    const KIND: &'static str = "";
    type State = Probe;
    async fn run(self, _cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        Ok(Outcome::Complete)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_kind_names_work_and_empty_ones_are_refused() {
    let (store, _dir) = sqlite().await;
    let client = Client::new(store.clone());
    let id = client.enqueue(OddKind).await.unwrap().id;
    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .register::<OddKind>()
        .queue("default", 1)
        .build()
        .unwrap()
        .start();
    let row = wait_state(&store, id, JobState::Completed).await;
    worker.shutdown().await;
    assert_eq!(row.kind, OddKind::KIND);
    assert_eq!(probe.runs(id), 1);

    let err = client.enqueue(EmptyKind).await.unwrap_err();
    assert!(err.to_string().contains("kind name is empty"), "{err}");
    let built = builder(store.clone(), Probe::default())
        .register::<EmptyKind>()
        .queue("default", 1)
        .build();
    assert!(
        matches!(
            built,
            Err(errand::WorkerError::InvalidKind { kind: "", .. })
        ),
        "{built:?}"
    );
    assert_eq!(
        store.count(&Default::default()).await.unwrap(),
        1,
        "nothing written for the empty kind"
    );
}

/// An outcome the database refuses does not hold up the outcomes written with it; its job
/// is left to the rescuer, which ends it like a job whose worker died.
async fn refused_outcome_is_left_to_the_rescuer<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let bad = client.enqueue(Refused).await.unwrap().id;
    let goods = client
        .enqueue_many((0..30).map(|n| Echo { n }))
        .await
        .unwrap();
    let worker = with_bad_jobs(store.clone())
        .queue("default", 8)
        .lease(Duration::from_millis(500))
        .build()
        .unwrap()
        .start();
    for g in &goods {
        wait_state(&store, g.id, JobState::Completed).await;
    }
    let row = wait_state(&store, bad, JobState::Discarded).await;
    worker.shutdown().await;
    assert_eq!(row.errors.len(), 1, "{:?}", row.errors);
    assert!(
        row.errors[0].message.contains("lease expired"),
        "{}",
        row.errors[0].message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_outcome_is_left_to_the_rescuer_sqlite() {
    let (store, _dir) = sqlite().await;
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE UPDATE OF errors ON errand_jobs \
         WHEN NEW.errors LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poison refused'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
    refused_outcome_is_left_to_the_rescuer(store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_outcome_is_left_to_the_rescuer_postgres() {
    let store = errand_postgres::testing::scratch_store().await;
    sqlx::query(&format!(
        "ALTER TABLE \"{}\".jobs ADD CONSTRAINT refuse_poison CHECK (errors::text NOT LIKE '%poison%')",
        store.schema()
    ))
    .execute(store.pool())
    .await
    .unwrap();
    refused_outcome_is_left_to_the_rescuer(store).await;
}
