//! Uniqueness end to end (issue 14 §5): however many tasks and processes enqueue the same
//! unique job at once, one row is written and every caller is told its id; a period keeps a
//! finished job's twin out.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::sqlite;
use errand::store::Store;
use errand::{
    Client, Job, JobContext, JobError, JobOptions, JobState, ListFilter, Outcome, Unique, Worker,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Report {
    account: u64,
    month: String,
}

impl Job for Report {
    const KIND: &'static str = "report";
    type State = ();
    async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> {
        Ok(Outcome::Complete)
    }
    fn options(&self) -> JobOptions {
        JobOptions::new().unique(Unique::by_args().period(Duration::from_secs(3600)))
    }
}

fn report() -> Report {
    Report {
        account: 42,
        month: "2026-11".into(),
    }
}

/// Every client enqueues the same job from `per_client` tasks at once; returns the results.
async fn race<S: Store + Clone>(
    clients: Vec<Client<S>>,
    per_client: usize,
) -> Vec<errand::Enqueued> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len() * per_client));
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..per_client {
            let (client, start) = (client.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                client.enqueue(report()).await.unwrap()
            }));
        }
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn one_inserted(results: &[errand::Enqueued]) -> i64 {
    assert_eq!(
        results.iter().filter(|e| e.inserted).count(),
        1,
        "{results:?}"
    );
    let ids: HashSet<i64> = results.iter().map(|e| e.id).collect();
    assert_eq!(
        ids.len(),
        1,
        "every duplicate names the one job: {results:?}"
    );
    *ids.iter().next().unwrap()
}

on_every_store!(sixteen_tasks_write_one_row_and_a_period_keeps_the_twin_out);

async fn sixteen_tasks_write_one_row_and_a_period_keeps_the_twin_out<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let results = race(vec![client.clone()], 16).await;
    let id = one_inserted(&results);
    assert_eq!(client.count(&ListFilter::new()).await.unwrap(), 1);

    // The job runs and completes; within the hour its twin is still a duplicate of it.
    let handle = Worker::builder(store, ())
        .register::<Report>()
        .queue("default", 2)
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
        .start();
    let row = client.wait(id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(row.state, JobState::Completed);
    handle.shutdown().await;
    let again = client.enqueue(report()).await.unwrap();
    assert_eq!((again.inserted, again.id), (false, id), "within the hour");
    // A different month is another job; the same one on another queue is a duplicate (the
    // key is not per queue).
    let other = client
        .enqueue(Report {
            account: 42,
            month: "2026-12".into(),
        })
        .await
        .unwrap();
    assert!(other.inserted);
    let moved = client
        .enqueue_with(report(), JobOptions::new().queue("elsewhere"))
        .await
        .unwrap();
    assert_eq!((moved.inserted, moved.id), (false, id));
    let per_queue = client
        .enqueue_with(
            report(),
            JobOptions::new()
                .queue("elsewhere")
                .unique(Unique::by_args().per_queue()),
        )
        .await
        .unwrap();
    assert!(
        per_queue.inserted,
        "per queue: another queue's job is not a twin"
    );
}

/// Four processes (stores sharing nothing in memory), four tasks each, on one Postgres
/// schema: one row.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_write_one_row_on_postgres() {
    let first = errand_postgres::testing::scratch_store().await;
    let mut clients = vec![Client::new(first.clone())];
    for i in 1..4 {
        let other = common::other_process(&first, &format!("errand-unique-{i}")).await;
        clients.push(Client::new(other));
    }
    let results = race(clients, 4).await;
    one_inserted(&results);
    assert_eq!(first.count(&ListFilter::new()).await.unwrap(), 1);
}

/// Four stores on one SQLite file (as four processes would have), four tasks each: one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_write_one_row_on_sqlite() {
    let (first, dir) = sqlite().await;
    let path = dir.path().join("errand.db");
    let mut clients = vec![Client::new(first.clone())];
    for _ in 1..4 {
        let other = errand::SqliteStore::open(path.to_str().unwrap())
            .await
            .unwrap();
        clients.push(Client::new(other));
    }
    let results = race(clients, 4).await;
    one_inserted(&results);
    assert_eq!(first.count(&ListFilter::new()).await.unwrap(), 1);
}
