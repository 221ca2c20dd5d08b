//! Pausing and resuming a queue (issue 14): a paused queue starts nothing new — its claimed-
//! ahead jobs go back unstarted, its running job finishes — and a resumed one runs at once;
//! on every store, and across processes on Postgres (notified, not polled).
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use errand::store::Store;
use errand::{Client, JobState, ListFilter, QueueOptions};

on_every_store!(a_paused_queue_starts_nothing_until_resumed);

async fn a_paused_queue_starts_nothing_until_resumed<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let probe = Probe::default();
    let long = client.enqueue(Sleeper { ms: 400 }).await.unwrap().id;
    let echoes: Vec<_> = client
        .enqueue_many((0..10).map(|n| Echo { n }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    // One slot, five claimed ahead: the echoes wait in the worker's buffer.
    let worker = builder(store.clone(), probe.clone())
        .queue("default", QueueOptions::new(1).prefetch(5))
        .build()
        .unwrap()
        .start();
    wait_for("the long job to start", Duration::from_secs(10), || async {
        probe.runs(long) == 1
    })
    .await;
    let record = client.pause_queue("default").await.unwrap();
    assert!(record.paused);
    // The running job finishes; the claimed-ahead jobs go back unstarted, uncharged.
    wait_state(&store, long, JobState::Completed).await;
    let available = ListFilter::new().state(JobState::Available);
    wait_for("the buffer released", Duration::from_secs(10), || async {
        store.count(&available).await.unwrap() == 10
    })
    .await;
    // Nothing starts while paused (checked throughout, for ten poll intervals).
    let paused_at = tokio::time::Instant::now();
    wait_for(
        "half a second of pause",
        Duration::from_secs(10),
        || async {
            assert!(
                echoes.iter().all(|id| probe.runs(*id) == 0),
                "a job started while paused"
            );
            paused_at.elapsed() >= Duration::from_millis(500)
        },
    )
    .await;
    let resumed = chrono::Utc::now();
    client.resume_queue("default").await.unwrap();
    for id in &echoes {
        let row = wait_state(&store, *id, JobState::Completed).await;
        assert_eq!(row.attempt, 1, "released without charging an attempt");
        assert!(row.attempted_at.unwrap() >= resumed - chrono::TimeDelta::milliseconds(5));
    }
    worker.shutdown().await;
    assert!(!client.queues().await.unwrap()[0].paused);
}

/// `operator` pauses and resumes the queue while a worker on `other` — a store sharing the
/// database but no memory, as another process's — runs a job of `long_ms` with five more
/// claimed ahead: the worker releases them unstarted, lets the long one finish, and runs
/// them after the resume. `poll` is the worker's poll interval.
async fn pause_reaches_another_store<S: Store + Clone>(
    operator: S,
    other: S,
    long_ms: u64,
    poll: Duration,
) {
    let client = Client::new(operator.clone());
    let probe = Probe::default();
    let long = client.enqueue(Sleeper { ms: long_ms }).await.unwrap().id;
    client
        .enqueue_many((0..5).map(|n| Echo { n }))
        .await
        .unwrap();
    let worker = builder(other, probe.clone())
        .queue("default", QueueOptions::new(1).prefetch(5))
        .poll_interval(poll)
        .build()
        .unwrap()
        .start();
    wait_for("the long job to start", Duration::from_secs(10), || async {
        probe.runs(long) == 1
    })
    .await;
    client.pause_queue("default").await.unwrap();
    let available = ListFilter::new().state(JobState::Available);
    wait_for(
        "the other store's worker to release its claimed-ahead jobs",
        Duration::from_secs(5),
        || async { operator.count(&available).await.unwrap() == 5 },
    )
    .await;
    wait_state(&operator, long, JobState::Completed).await;
    assert_eq!(probe.total(), 1, "only the running job ran");
    client.resume_queue("default").await.unwrap();
    let completed = ListFilter::new().state(JobState::Completed);
    wait_for(
        "the other store's worker to resume",
        Duration::from_secs(10),
        || async { operator.count(&completed).await.unwrap() == 6 },
    )
    .await;
    worker.shutdown().await;
}

/// Another process pauses the queue: this worker hears it by `NOTIFY` (its own polls are
/// 30 s apart, so an answer within the 5 s bound was notified), and the resume the same way.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_from_another_process_is_heard_at_once() {
    let operator = errand_postgres::testing::scratch_store().await;
    let other = common::other_process(&operator, "errand-pause-worker").await;
    pause_reaches_another_store(operator, other, 300, Duration::from_secs(30)).await;
}

/// Two stores on one SQLite file share nothing in memory (as two processes would): the
/// worker's watcher finds the pause by polling the file, within its one-second poll (the
/// long job outlasts it, so the pause is found while it runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_through_another_sqlite_store_is_found_by_polling() {
    let (operator, _dir) = sqlite().await;
    let other = errand::SqliteStore::open(operator.path().to_str().unwrap())
        .await
        .unwrap();
    pause_reaches_another_store(operator, other, 2500, Duration::from_millis(50)).await;
}
