//! A queue of large jobs buffers by bytes, not only by count (issue 15: 1,000 claimed 1 MB
//! jobs held 1.46 GB): with 256 KiB payloads and a 4 MiB buffer budget, a worker whose short
//! jobs would otherwise buffer about 200 claims no more than its slots and 16 more.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{sqlite, wait_for};
use errand::store::Store;
use errand::{
    Client, Job, JobContext, JobError, JobState, ListFilter, Outcome, QueueOptions, Worker,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Blob {
    data: String,
}

impl Job for Blob {
    const KIND: &'static str = "blob";
    type State = ();
    async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(Outcome::Complete)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_jobs_are_buffered_by_bytes() {
    let (store, _dir) = sqlite().await;
    let client = Client::new(store.clone());
    let jobs = 200u64;
    client
        .enqueue_many((0..jobs).map(|_| Blob {
            data: "x".repeat(256 << 10),
        }))
        .await
        .unwrap();
    let worker = Worker::builder(store.clone(), ())
        .register::<Blob>()
        .queue("default", QueueOptions::new(4).prefetch_bytes(4 << 20))
        .build()
        .unwrap()
        .start();
    let most = AtomicU64::new(0);
    let (running, done) = (
        ListFilter::new().state(JobState::Running),
        ListFilter::new().state(JobState::Completed),
    );
    wait_for("200 large jobs", Duration::from_secs(120), || async {
        most.fetch_max(store.count(&running).await.unwrap(), Ordering::Relaxed);
        store.count(&done).await.unwrap() == jobs
    })
    .await;
    worker.shutdown().await;
    let most = most.into_inner();
    eprintln!("at most {most} claimed at once (4 slots, 4 MiB of 256 KiB jobs: 16 buffered)");
    // 4 running + 16 buffered, and finished jobs whose outcomes are being written.
    assert!(most <= 40, "{most} jobs claimed at once");
}
