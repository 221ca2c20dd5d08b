//! The SQLite write-ahead log stays bounded under a worker: 100,000 no-op jobs enqueued and
//! run leave a WAL under 32 MiB (issue 15: it used to grow without end, 254 MiB after 20,000
//! jobs, because no checkpoint could restart it while readers kept it in use).
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::time::Duration;

use common::{sqlite, wait_for, Echo};
use errand::store::Store;
use errand::{Client, JobState, ListFilter, QueueOptions, Worker};

/// The bound the test holds the WAL to.
const WAL_BOUND: u64 = 32 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_the_wal_bounded() {
    let (store, dir) = sqlite().await;
    let client = Client::new(store.clone());
    let jobs = 100_000u64;
    for chunk in 0..(jobs / 5_000) {
        client
            .enqueue_many((0..5_000).map(|n| Echo {
                n: (chunk * 5_000 + n) as u32,
            }))
            .await
            .unwrap();
    }
    let wal = dir.path().join("errand.db-wal");
    let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let after_enqueue = size();
    let worker = Worker::builder(store.clone(), common::Probe::default())
        .register::<Echo>()
        .queue("default", QueueOptions::new(10))
        .build()
        .unwrap()
        .start();
    let done = ListFilter::new().state(JobState::Completed);
    let largest = std::sync::atomic::AtomicU64::new(after_enqueue);
    wait_for("100,000 jobs run", Duration::from_secs(300), || async {
        largest.fetch_max(size(), std::sync::atomic::Ordering::Relaxed);
        store.count(&done).await.unwrap() == jobs
    })
    .await;
    worker.shutdown().await;
    let largest = largest.into_inner().max(size());
    let db = std::fs::metadata(dir.path().join("errand.db"))
        .unwrap()
        .len();
    eprintln!(
        "WAL after enqueueing {jobs} jobs: {:.1} MiB; largest while they ran: {:.1} MiB; \
         at the end: {:.1} MiB; database file {:.1} MiB",
        after_enqueue as f64 / 1048576.0,
        largest as f64 / 1048576.0,
        size() as f64 / 1048576.0,
        db as f64 / 1048576.0
    );
    assert!(
        largest < WAL_BOUND,
        "the WAL reached {largest} bytes (bound {WAL_BOUND})"
    );
}

/// Single enqueues (an `INSERT … RETURNING id` each) keep the WAL bounded too: 20,000 of them
/// leave it under the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_enqueues_keep_the_wal_bounded() {
    let (store, dir) = sqlite().await;
    let client = Client::new(store.clone());
    for n in 0..20_000 {
        client.enqueue(Echo { n }).await.unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("errand.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "WAL after 20,000 single enqueues: {:.1} MiB",
        wal as f64 / 1048576.0
    );
    assert!(
        wal < WAL_BOUND,
        "the WAL reached {wal} bytes (bound {WAL_BOUND})"
    );
}
