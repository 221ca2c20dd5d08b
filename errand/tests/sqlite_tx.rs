//! Transactional enqueue on SQLite: a job enqueued in the application's transaction exists
//! only if the transaction commits (issue 13, section 2), as on Postgres.
#![cfg(feature = "sqlite")]

mod common;

use common::*;
use errand::{Client, JobOptions, JobState, ListFilter, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_tx_exists_only_if_the_transaction_commits() {
    let (store, _dir) = sqlite().await;
    let client = Client::new(store.clone());
    sqlx::query("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();

    // Rolled back: neither the user nor the job.
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO users (name) VALUES ('bob')")
        .execute(&mut *tx)
        .await
        .unwrap();
    client.enqueue_tx(&mut tx, Echo { n: 1 }).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(store.count(&ListFilter::new()).await.unwrap(), 0);

    // Committed: both, and a worker runs the job.
    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 2)
        .build()
        .unwrap()
        .start();
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO users (name) VALUES ('ada')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let first = client
        .enqueue_with_tx(&mut tx, Echo { n: 2 }, JobOptions::new().unique_key("ada"))
        .await
        .unwrap();
    let again = client
        .enqueue_with_tx(&mut tx, Echo { n: 3 }, JobOptions::new().unique_key("ada"))
        .await
        .unwrap();
    assert!(first.inserted && !again.inserted && again.id == first.id);
    let many = client
        .enqueue_many_tx(&mut tx, (10..13).map(|n| Echo { n }))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for id in std::iter::once(first.id).chain(many.iter().map(|e| e.id)) {
        wait_state(&store, id, JobState::Completed).await;
        assert_eq!(probe.runs(id), 1);
    }
    worker.shutdown().await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(users, 1);
    assert_eq!(store.count(&ListFilter::new()).await.unwrap(), 4);
}
