//! The testing kit on every store: `Worker::drain` runs jobs inline (with the jobs they
//! enqueue, skipping delays and backoffs) and `errand::testing` reads what is enqueued.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::sqlite;
use errand::store::Store;
use errand::testing::{assert_enqueued, enqueued, refute_enqueued};
use errand::{Backoff, Client, Job, JobContext, JobError, JobOptions, JobState, Outcome, Worker};
use serde::{Deserialize, Serialize};

type Kit = Client<Arc<dyn Store>>;

/// Enqueues a `Child` when it runs.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Parent {
    n: u32,
}
impl Job for Parent {
    const KIND: &'static str = "parent";
    type State = Kit;
    async fn run(self, cx: JobContext<Kit>) -> Result<Outcome, JobError> {
        cx.state()
            .enqueue(Child { of: self.n })
            .await
            .map_err(JobError::msg)?;
        Ok(Outcome::Complete)
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Child {
    of: u32,
}
impl Job for Child {
    const KIND: &'static str = "child";
    type State = Kit;
    async fn run(self, _cx: JobContext<Kit>) -> Result<Outcome, JobError> {
        Ok(Outcome::Complete)
    }
}

/// Fails its first two attempts, with an hour of backoff between them.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Stubborn;
impl Job for Stubborn {
    const KIND: &'static str = "stubborn";
    type State = Kit;
    async fn run(self, cx: JobContext<Kit>) -> Result<Outcome, JobError> {
        if cx.attempt() < 3 {
            return Err(JobError::msg("not yet"));
        }
        Ok(Outcome::Complete)
    }
    fn options(&self) -> JobOptions {
        JobOptions::new()
            .max_attempts(5)
            .backoff(Backoff::constant(Duration::from_secs(3600)))
    }
}

on_every_store!(
    drain_runs_everything_inline,
    enqueued_jobs_are_read_back_typed,
    inline_enqueue_runs_the_job_at_once
);

/// `InlineClient::enqueue` returns once the job and what it led to have run.
async fn inline_enqueue_runs_the_job_at_once<S: Store + Clone>(store: S) {
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let worker = Worker::builder(store.clone(), Client::new(shared))
        .register::<Parent>()
        .register::<Child>()
        .register::<Stubborn>()
        .queue("default", 1)
        .build()
        .unwrap();
    let inline = errand::testing::InlineClient::new(&worker);
    let (parent, report) = inline.enqueue(Parent { n: 4 }).await.unwrap();
    assert_eq!(
        report.count(JobState::Completed),
        2,
        "the parent and its child: {report:?}"
    );
    assert_eq!(report.runs[0], (parent.id, JobState::Completed));
    assert_eq!(
        enqueued::<Child>(&store).all().await,
        Vec::<Child>::new(),
        "the child ran too"
    );
    let (stubborn, report) = inline
        .enqueue_with(Stubborn, JobOptions::new().delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(
        report.runs.len(),
        3,
        "two retries, then success: {report:?}"
    );
    let row = store.get(stubborn.id).await.unwrap().unwrap();
    assert_eq!((row.state, row.attempt), (JobState::Completed, 3));
}

async fn drain_runs_everything_inline<S: Store + Clone>(store: S) {
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let client: Kit = Client::new(shared);
    client.enqueue(Parent { n: 1 }).await.unwrap();
    client.enqueue(Stubborn).await.unwrap();
    let later = client
        .enqueue_with(
            Child { of: 0 },
            JobOptions::new().delay(Duration::from_secs(86_400)),
        )
        .await
        .unwrap()
        .id;
    let worker = Worker::builder(store.clone(), client.clone())
        .register::<Parent>()
        .register::<Child>()
        .register::<Stubborn>()
        .queue("default", 1)
        .build()
        .unwrap();
    let report = worker.drain().await.unwrap();
    // Parent, its child, the delayed child, and Stubborn three times (two retries whose
    // hour of backoff was skipped).
    assert_eq!(report.count(JobState::Completed), 4, "{report:?}");
    assert_eq!(report.count(JobState::Retryable), 2, "{report:?}");
    assert!(!report.stopped_early);
    assert_eq!(
        store.get(later).await.unwrap().unwrap().state,
        JobState::Completed
    );
    let left = store
        .count(&errand::ListFilter::new().state(JobState::Available))
        .await
        .unwrap();
    assert_eq!(left, 0);
    // Nothing left: a second drain runs nothing.
    assert!(worker.drain().await.unwrap().runs.is_empty());
}

async fn enqueued_jobs_are_read_back_typed<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    client.enqueue(Parent { n: 1 }).await.unwrap();
    client
        .enqueue_with(Parent { n: 2 }, JobOptions::new().queue("other"))
        .await
        .unwrap();
    client
        .enqueue_with(
            Parent { n: 3 },
            JobOptions::new().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert_eq!(
        enqueued::<Parent>(&store).all().await,
        vec![Parent { n: 1 }, Parent { n: 2 }, Parent { n: 3 }]
    );
    assert_eq!(
        enqueued::<Parent>(&store).queue("other").all().await,
        vec![Parent { n: 2 }]
    );
    let soon = chrono::Utc::now() + chrono::TimeDelta::seconds(60);
    assert_eq!(enqueued::<Parent>(&store).due_by(soon).all().await.len(), 2);
    assert_eq!(
        enqueued::<Parent>(&store)
            .matching(|p| p.n > 1)
            .all()
            .await
            .len(),
        2
    );
    assert_eq!(
        assert_enqueued::<Parent>(&store, |p| p.n == 3).await,
        Parent { n: 3 }
    );
    refute_enqueued::<Parent>(&store, |p| p.n == 4).await;
    refute_enqueued::<Child>(&store, |_| true).await;
    let (row, _) = &enqueued::<Parent>(&store).rows().await[0];
    assert_eq!(row.decode::<Parent>().unwrap(), Parent { n: 1 });
}

#[tokio::test]
#[should_panic(expected = "no enqueued job of kind 'parent' matches")]
async fn assert_enqueued_fails_saying_what_is_there() {
    let store = errand::MemoryStore::new();
    Client::new(store.clone())
        .enqueue(Parent { n: 1 })
        .await
        .unwrap();
    assert_enqueued::<Parent>(&store, |p| p.n == 2).await;
}
