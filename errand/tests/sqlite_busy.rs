//! A SQLite file held locked by another writer for seconds: the worker waits or retries with
//! backoff, loses nothing, and finishes once the lock is gone.
#![cfg(feature = "sqlite")]

mod common;

use std::time::Duration;

use common::*;
use errand::store::Store;
use errand::{Client, JobState, ListFilter, SqliteStore};
use sqlx::Connection;

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
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 4)
        .build()
        .unwrap()
        .start();
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
    let mut other = sqlx::SqliteConnection::connect(&format!("{url}?mode=rw"))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
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
