//! Job results and progress (issue 14 §6): a job returns a typed value, stored with it and
//! read back by `Client::result` and `Client::wait` in any process; progress reports reach
//! the store, the last one always; a result that cannot be stored discards the job with the
//! reason, never retrying the work.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::sqlite;
use errand::store::Store;
use errand::{
    Client, Job, JobContext, JobError, JobState, Outcome, Produces, ResultError, Worker,
    WorkerHandle,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    pages: u32,
    title: String,
    ratio: f64,
}

/// Reports progress `steps` times in a tight loop, then returns a summary.
#[derive(Serialize, Deserialize)]
struct Summarize {
    steps: u32,
}

impl Job for Summarize {
    const KIND: &'static str = "summarize";
    type State = Gate;
    async fn run(self, cx: JobContext<Gate>) -> Result<Outcome, JobError> {
        for i in 1..=self.steps {
            let done = f64::from(i) * 100.0 / f64::from(self.steps);
            cx.progress(done, format!("{i} of {}", self.steps)).await;
        }
        Ok(Outcome::output::<Self>(&Summary {
            pages: self.steps,
            title: "naïve \"quotes\" <b>".into(),
            ratio: 0.1 + 0.2,
        }))
    }
}

impl Produces for Summarize {
    type Output = Summary;
}

/// Returns a value that cannot be stored.
#[derive(Serialize, Deserialize)]
enum Unstorable {
    NaN,
    Huge,
}

impl Job for Unstorable {
    const KIND: &'static str = "unstorable";
    type State = Gate;
    async fn run(self, _: JobContext<Gate>) -> Result<Outcome, JobError> {
        Ok(match self {
            Unstorable::NaN => Outcome::complete_with(&vec![1.0, f64::NAN]),
            Unstorable::Huge => Outcome::complete_with(&"x".repeat(errand::MAX_RESULT_LEN)),
        })
    }
}

impl Produces for Unstorable {
    type Output = Vec<f64>;
}

/// Starts, says so, and completes with a summary when the test releases it.
#[derive(Clone, Default)]
struct Gate {
    started: Arc<Notify>,
    release: Arc<Notify>,
}

#[derive(Serialize, Deserialize)]
struct Held;

impl Job for Held {
    const KIND: &'static str = "held";
    type State = Gate;
    async fn run(self, cx: JobContext<Gate>) -> Result<Outcome, JobError> {
        cx.state().started.notify_one();
        cx.state().release.notified().await;
        Ok(Outcome::complete_with(&Summary {
            pages: 7,
            title: "held".into(),
            ratio: 1.5,
        }))
    }
}

fn worker<S: Store>(store: S, gate: Gate) -> WorkerHandle {
    Worker::builder(store, gate)
        .register::<Summarize>()
        .register::<Unstorable>()
        .register::<Held>()
        .queue("default", 4)
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
        .start()
}

const WAIT: Duration = Duration::from_secs(20);

on_every_store!(a_result_comes_back_typed_with_the_last_progress);

async fn a_result_comes_back_typed_with_the_last_progress<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let handle = worker(store, Gate::default());
    let id = client.enqueue(Summarize { steps: 500 }).await.unwrap().id;
    let row = client.wait(id, WAIT).await.unwrap();
    assert_eq!(row.state, JobState::Completed);
    let expected = Summary {
        pages: 500,
        title: "naïve \"quotes\" <b>".into(),
        ratio: 0.1 + 0.2,
    };
    assert_eq!(row.result_as::<Summary>().unwrap(), Some(expected.clone()));
    assert_eq!(client.result::<Summary>(id).await.unwrap(), Some(expected));
    // 500 reports in a tight loop: the throttle held most back, and the last one was
    // written when the run ended.
    let progress = row.progress.expect("progress stored");
    assert_eq!(progress.percent, Some(100.0));
    assert_eq!(progress.message, "500 of 500");
    assert_eq!(progress.attempt, 1);
    // Asked as the wrong type: an error naming the job and the type.
    match client.result::<Vec<u8>>(id).await {
        Err(ResultError::Type(e)) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("job {id} (summarize)")) && text.contains("Vec<u8>"),
                "{text}"
            );
        }
        other => panic!("expected a type error, got {other:?}"),
    }
    handle.shutdown().await;
}

on_every_store!(an_output_comes_back_typed_by_its_job);

/// `Produces`: the output read by job type, a job of another kind refused with both kinds
/// named, and a job that ended without an output said so with its reason.
async fn an_output_comes_back_typed_by_its_job<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let handle = worker(store, Gate::default());
    let id = client.enqueue(Summarize { steps: 3 }).await.unwrap().id;
    let summary = client.wait_output::<Summarize>(id, WAIT).await.unwrap();
    assert_eq!((summary.pages, summary.ratio), (3, 0.1 + 0.2));
    assert_eq!(client.output::<Summarize>(id).await.unwrap(), Some(summary));
    match client.output::<Unstorable>(id).await {
        Err(e @ ResultError::Kind { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("job {id} is of kind summarize, not unstorable")),
                "{text}"
            );
        }
        other => panic!("expected a kind error, got {other:?}"),
    }
    let nan = client.enqueue(Unstorable::NaN).await.unwrap().id;
    match client.wait_output::<Unstorable>(nan, WAIT).await {
        Err(ResultError::NoOutput { id, state, reason }) => {
            assert_eq!((id, state), (nan, JobState::Discarded));
            let reason = reason.expect("the discard's reason");
            assert!(reason.contains("NaN"), "{reason}");
        }
        other => panic!("expected no output, got {other:?}"),
    }
    handle.shutdown().await;
}

on_every_store!(a_result_that_cannot_be_stored_discards_the_job_once);

async fn a_result_that_cannot_be_stored_discards_the_job_once<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let handle = worker(store, Gate::default());
    for (job, reason) in [
        (Unstorable::NaN, "NaN"),
        (Unstorable::Huge, "over the limit of 1048576"),
    ] {
        let id = client.enqueue(job).await.unwrap().id;
        let row = client.wait(id, WAIT).await.unwrap();
        assert_eq!(row.state, JobState::Discarded, "{row:?}");
        assert_eq!(row.attempt, 1, "not retried: that would repeat the work");
        let message = &row.errors[0].message;
        assert!(
            message.contains("the job ran, but its result cannot be stored")
                && message.contains(reason),
            "{message}"
        );
        assert_eq!(client.result::<serde_json::Value>(id).await.unwrap(), None);
    }
    handle.shutdown().await;
}

/// A wait that outlasts its timeout says what state the job is in; a missing job is named.
#[tokio::test]
async fn a_wait_gives_up_after_its_timeout_and_names_missing_jobs() {
    let client = Client::new(errand::MemoryStore::new());
    let id = client.enqueue(Held).await.unwrap().id;
    match client.wait(id, Duration::from_millis(100)).await {
        Err(ResultError::TimedOut { id: got, state, .. }) => {
            assert_eq!((got, state), (id, JobState::Available));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let err = client.wait(id + 1, WAIT).await.unwrap_err();
    assert!(
        matches!(err, ResultError::NotFound(n) if n == id + 1),
        "{err}"
    );
    assert!(client.result::<u8>(id).await.unwrap().is_none());
}

/// `client` waits for a job that `worker_store`'s worker runs and holds; the job is released
/// once `settled` says the wait is under way. Returns how long after the release the wait
/// returned.
async fn wait_from_another_store<S, W, F, Fut>(
    worker_store: S,
    client: Client<W>,
    settled: F,
) -> Duration
where
    S: Store + Clone,
    W: Store + Clone,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let gate = Gate::default();
    let handle = worker(worker_store, gate.clone());
    let id = client.enqueue(Held).await.unwrap().id;
    tokio::time::timeout(WAIT, gate.started.notified())
        .await
        .expect("the job started");
    let waiting = tokio::spawn(async move { client.wait(id, WAIT).await });
    common::wait_for("the wait to be under way", WAIT, settled).await;
    assert!(!waiting.is_finished(), "the job has not ended yet");
    gate.release.notify_one();
    let released = tokio::time::Instant::now();
    let row = waiting.await.unwrap().unwrap();
    let took = released.elapsed();
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(
        row.result_as::<Summary>().unwrap(),
        Some(Summary {
            pages: 7,
            title: "held".into(),
            ratio: 1.5
        })
    );
    handle.shutdown().await;
    took
}

/// Another process waits on Postgres, looking again only every 60 s: the end is announced by
/// `NOTIFY` (the job is marked as waited on), so the wait returns at once. (Without the
/// mark it times out.)
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_in_another_process_is_notified_on_postgres() {
    let worker_store = errand_postgres::testing::scratch_store().await;
    let waiter = common::other_process(&worker_store, "errand-waiter").await;
    let pool = worker_store.pool().clone();
    let client = Client::new(waiter).wait_poll(Duration::from_secs(60));
    // Under way: the waiting process's LISTEN connection is up (it wakes the wait once when
    // it connects, and that look must come before the job ends to prove nothing).
    let settled = move || {
        let pool = pool.clone();
        async move {
            let listening: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'errand-waiter:listen' AND query LIKE 'LISTEN%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if listening == 0 {
                return false;
            }
            // Give the wait a moment to take its look after the connect's wake-up.
            tokio::time::sleep(Duration::from_millis(200)).await;
            true
        }
    };
    let took = wait_from_another_store(worker_store, client, settled).await;
    assert!(
        took < Duration::from_secs(5),
        "the wait returned {took:?} after the job ended: it was not notified"
    );
}

/// Another process waits on one SQLite file: it looks again at most every 500 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_in_another_process_sees_the_end_on_sqlite() {
    let (store, dir) = sqlite().await;
    let path = dir.path().join("errand.db");
    let other = errand::SqliteStore::open(path.to_str().unwrap())
        .await
        .unwrap();
    let began = tokio::time::Instant::now();
    // Under way past the first looks (50, 100, 200 ms apart…).
    let settled = move || async move { began.elapsed() > Duration::from_millis(1_500) };
    let took = wait_from_another_store(store, Client::new(other), settled).await;
    assert!(
        took < Duration::from_millis(1_500),
        "the wait returned {took:?} after the job ended"
    );
}
