//! A queue's fleet-wide limit (issue 14): however many workers work it, at most N of its jobs
//! run at once; on every store, and across processes on Postgres.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "postgres")]
use common::other_process;
use common::{sqlite, wait_for};
use errand::store::Store;
use errand::{Client, Job, JobContext, JobError, JobState, ListFilter, Outcome, Worker};
use serde::{Deserialize, Serialize};

/// How many run now, and the most that ever ran at once.
#[derive(Clone, Default)]
struct Gauge {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

#[derive(Serialize, Deserialize)]
struct Busy {
    ms: u64,
}

impl Job for Busy {
    const KIND: &'static str = "busy";
    type State = Gauge;
    async fn run(self, cx: JobContext<Gauge>) -> Result<Outcome, JobError> {
        let g = cx.state();
        let n = g.now.fetch_add(1, Ordering::SeqCst) + 1;
        g.max.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        g.now.fetch_sub(1, Ordering::SeqCst);
        Ok(Outcome::Complete)
    }
}

fn worker<S: Store>(store: S, gauge: &Gauge) -> errand::WorkerHandle {
    worker_polling(store, gauge, Duration::from_millis(50))
}

fn worker_polling<S: Store>(store: S, gauge: &Gauge, poll: Duration) -> errand::WorkerHandle {
    Worker::builder(store, gauge.clone())
        .register::<Busy>()
        .queue("default", 6)
        .poll_interval(poll)
        .build()
        .unwrap()
        .start()
}

on_every_store!(two_workers_never_run_more_than_the_limit);

/// `jobs` jobs under a limit of `limit`, worked by a worker on each of two stores of one
/// database (the same store twice, or two sharing no memory as two processes would): the
/// most that ever ran at once is the limit.
async fn two_workers_share_a_limit<S: Store + Clone>(first: S, second: S, limit: u32, jobs: usize) {
    let client = Client::new(first.clone());
    client
        .set_queue_limit("default", Some(limit))
        .await
        .unwrap();
    client
        .enqueue_many((0..jobs).map(|_| Busy { ms: 40 }))
        .await
        .unwrap();
    let gauge = Gauge::default();
    let (a, b) = (worker(first.clone(), &gauge), worker(second, &gauge));
    let done = ListFilter::new().state(JobState::Completed);
    wait_for("every job done", Duration::from_secs(30), || async {
        first.count(&done).await.unwrap() == jobs as u64
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
    // Twelve slots between the workers: the limit bounds them, and was reached.
    assert_eq!(gauge.max.load(Ordering::SeqCst), limit as usize);
}

async fn two_workers_never_run_more_than_the_limit<S: Store + Clone>(store: S) {
    two_workers_share_a_limit(store.clone(), store, 3, 24).await;
}

/// Two processes (separate pools and listeners) on one schema share the limit.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_limit() {
    let first = errand_postgres::testing::scratch_store().await;
    let second = other_process(&first, "errand-limit-second").await;
    two_workers_share_a_limit(first, second, 2, 16).await;
}

/// A slot freed in one process wakes the worker of another that found the queue full: the
/// finishing statement `NOTIFY`s the limited queue, and that worker's own polls are 30 s
/// apart, so a start within the 5 s bound was notified.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_freed_in_another_process_is_heard_at_once() {
    let first = errand_postgres::testing::scratch_store().await;
    let second = other_process(&first, "errand-limit-waiter").await;
    let client = Client::new(first.clone());
    client.set_queue_limit("default", Some(1)).await.unwrap();
    client.enqueue(Busy { ms: 400 }).await.unwrap();
    let next = client.enqueue(Busy { ms: 0 }).await.unwrap().id;
    let (ga, gb) = (Gauge::default(), Gauge::default());
    let poll = Duration::from_secs(30);
    let a = worker_polling(first.clone(), &ga, poll);
    let b = worker_polling(second, &gb, poll);
    wait_for(
        "the first job to start",
        Duration::from_secs(10),
        || async { ga.now.load(Ordering::SeqCst) + gb.now.load(Ordering::SeqCst) == 1 },
    )
    .await;
    // Stop the worker holding the slot: it finishes its job and claims nothing more, so
    // only the other worker can run the next job, once it hears the slot is free.
    let (holder, waiter) = if ga.now.load(Ordering::SeqCst) == 1 {
        (a, b)
    } else {
        (b, a)
    };
    holder.shutdown().await;
    let done = ListFilter::new().state(JobState::Completed);
    wait_for(
        "the waiting process to take the freed slot",
        Duration::from_secs(5),
        || async { first.count(&done).await.unwrap() == 2 },
    )
    .await;
    assert_eq!(
        first.get(next).await.unwrap().unwrap().state,
        JobState::Completed
    );
    waiter.shutdown().await;
}

/// Two stores on one SQLite file (as two processes would have) share the limit: it is kept
/// in the file and checked by each claim under SQLite's single writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sqlite_stores_share_the_limit() {
    let (first, _dir) = sqlite().await;
    let second = errand::SqliteStore::open(first.path().to_str().unwrap())
        .await
        .unwrap();
    two_workers_share_a_limit(first, second, 2, 16).await;
}
