//! Transactional enqueue on SQLite: a job enqueued in the application's transaction exists
//! only if the transaction commits (issue 13, section 2), as on Postgres.
#![cfg(feature = "sqlite")]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::*;
use errand::store::Store;
use errand::{Client, JobOptions, JobState, ListFilter};

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

/// Writes an invoice and completes in the same SQLite transaction; on its first attempt,
/// when told to, it rolls both back and fails.
#[derive(serde::Serialize, serde::Deserialize)]
struct Invoice {
    amount: i64,
    roll_back_first: bool,
}

impl errand::Job for Invoice {
    const KIND: &'static str = "invoice";
    type State = (errand::SqliteStore, Arc<AtomicU32>);
    async fn run(
        self,
        cx: errand::JobContext<Self::State>,
    ) -> Result<errand::Outcome, errand::JobError> {
        let (store, runs) = cx.state();
        runs.fetch_add(1, Ordering::SeqCst);
        let mut tx = store.pool().begin().await?;
        sqlx::query("INSERT INTO invoices (job_id, amount) VALUES (?, ?)")
            .bind(cx.job_id())
            .bind(self.amount)
            .execute(&mut *tx)
            .await?;
        cx.complete_in(store, &mut tx).await?;
        if self.roll_back_first && cx.attempt() == 1 {
            tx.rollback().await?;
            return Err(errand::JobError::msg("rolled back after complete_in"));
        }
        tx.commit().await?;
        Ok(errand::Outcome::Complete)
    }
    fn options(&self) -> JobOptions {
        JobOptions::new().backoff(errand::Backoff::constant(std::time::Duration::from_millis(
            1,
        )))
    }
}

/// `complete_in` on SQLite: the completion is part of the job's own transaction — committed
/// with its writes, or rolled back with them (the job is then retried, not lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_completes_in_its_own_sqlite_transaction() {
    let (store, _dir) = sqlite().await;
    sqlx::query("CREATE TABLE invoices (job_id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    let client = Client::new(store.clone());
    let ids: Vec<_> = client
        .enqueue_many((1..=10).map(|amount| Invoice {
            amount,
            roll_back_first: amount == 3,
        }))
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let worker = errand::Worker::builder(store.clone(), (store.clone(), runs.clone()))
        .register::<Invoice>()
        .queue("default", 4)
        .build()
        .unwrap()
        .start();
    for (i, e) in ids.iter().enumerate() {
        let row = wait_state(&store, e.id, JobState::Completed).await;
        if i == 2 {
            assert_eq!(row.attempt, 2, "{row:?}");
            assert_eq!(row.errors[0].message, "rolled back after complete_in");
        } else {
            assert_eq!((row.attempt, row.errors.len()), (1, 0), "{row:?}");
        }
    }
    worker.shutdown().await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        11,
        "each job ran once, the rolled-back one twice"
    );
    let (rows, total): (i64, i64) = sqlx::query_as("SELECT count(*), sum(amount) FROM invoices")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!((rows, total), (10, 55));
}
