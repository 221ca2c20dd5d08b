//! A SQLite file held locked by another writer for seconds: the worker waits or retries with
//! backoff, loses nothing, and finishes once the lock is gone.
#![cfg(feature = "sqlite")]

mod common;

use std::time::Duration;

use common::*;
use errand::store::Store;
use errand::{Client, JobState, ListFilter, SqliteStore};
use sqlx::Connection;

/// Another connection to the file at `url`, holding its write lock until `COMMIT`.
async fn write_lock(url: &str) -> sqlx::SqliteConnection {
    let mut other = sqlx::SqliteConnection::connect(&format!("{url}?mode=rw"))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    other
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_rides_out_a_locked_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let url = format!("sqlite://{}", path.display());
    // Short busy timeout, so the lock outlasts it and the runtime's retries are exercised.
    let store = SqliteStore::builder(&url)
        .busy_timeout(Duration::from_millis(200))
        .open()
        .await
        .unwrap();
    let client = Client::new(store.clone());
    let probe = Probe::default();
    let worker = started(store.clone(), probe.clone());
    client
        .enqueue_many((0..50).map(|n| Echo { n }))
        .await
        .unwrap();
    wait_for(
        "a first job to complete",
        Duration::from_secs(10),
        || async { probe.total() > 0 },
    )
    .await;

    // Another connection takes the write lock and holds it for 3 s.
    let mut other = write_lock(&url).await;
    sqlx::query("UPDATE errand_jobs SET priority = priority WHERE id = 1")
        .execute(&mut other)
        .await
        .unwrap();
    let inserted_during = tokio::spawn({
        let client = client.clone();
        async move {
            // Enqueues during the lock fail with a clear error or wait; none is half-written.
            client.enqueue_many((100..150).map(|n| Echo { n })).await
        }
    });
    // The outage itself: the lock is held this long (not a wait for a condition).
    tokio::time::sleep(Duration::from_secs(3)).await;
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    // The enqueue met the lock for longer than its 200 ms busy timeout: refused whole, with
    // the database's word for it, and nothing of the batch written.
    let during = inserted_during.await.unwrap();
    let e = during.expect_err("an enqueue against a file locked for 3 s waited it out");
    assert!(e.to_string().contains("database is locked"), "{e}");
    let expected = 50;
    wait_for(
        "every job completed after the lock",
        Duration::from_secs(30),
        || async {
            store
                .count(&ListFilter::new().state(JobState::Completed))
                .await
                .unwrap_or(0)
                == expected
        },
    )
    .await;
    worker.shutdown().await;
    assert_eq!(store.count(&ListFilter::new()).await.unwrap(), expected);
    assert_eq!(probe.total() as u64, expected, "each job ran once");
}

/// A single enqueue runs its insert in place on the runtime's thread (see errand-sqlite's
/// `direct`), but never waits there for a file another connection holds: it hands the insert
/// to the store's writer thread, and the runtime — here one thread — goes on running tasks.
#[tokio::test(flavor = "current_thread")]
async fn an_enqueue_that_meets_a_locked_file_leaves_the_runtime_free() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("free.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let client = Client::new(store.clone());
    let mut other = write_lock(&url).await;
    let enqueue = tokio::spawn({
        let client = client.clone();
        async move { client.enqueue(Echo { n: 7 }).await }
    });
    // Other tasks run while the enqueue waits: had it waited in SQLite's busy handler on this
    // thread, these ticks (100 ms) would come only after its busy timeout (10 s by default).
    let ticks = std::time::Instant::now();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        ticks.elapsed() < Duration::from_secs(5),
        "the runtime's one thread was blocked for {:?} while the file was locked",
        ticks.elapsed()
    );
    assert!(
        !enqueue.is_finished(),
        "the enqueue ended while the file was still locked: {:?}",
        enqueue.await
    );
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let done = enqueue
        .await
        .unwrap()
        .expect("the enqueue went through once the lock was gone");
    assert!(done.inserted);
    let job = store
        .get(done.id)
        .await
        .unwrap()
        .expect("the job is stored");
    assert_eq!(job.state, JobState::Available);
    assert_eq!(store.count(&ListFilter::new()).await.unwrap(), 1);
}
