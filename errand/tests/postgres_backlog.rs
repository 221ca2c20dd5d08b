//! Fast jobs on Postgres must not outrun the completer (issue 12, section 2): 300,000 no-op
//! jobs after statistics that say almost nothing runs, then a shutdown as soon as the last
//! one has run. Every job completes exactly once, the jobs held in memory stay bounded and
//! shutdown records every outcome it holds.
#![cfg(feature = "postgres")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use errand::store::Store;
use errand::{Client, Job, JobContext, JobError, Outcome, Worker};
use errand_postgres::testing::scratch_store;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Noop;
impl Job for Noop {
    const KIND: &'static str = "noop";
    type State = Arc<AtomicU64>;
    async fn run(self, cx: JobContext<Arc<AtomicU64>>) -> Result<Outcome, JobError> {
        cx.state().fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::Complete)
    }
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

const JOBS: u64 = 300_000;
/// Concurrency 10 + the largest prefetch (1,000) + the completer's backlog (5,000) + one
/// batch being written (1,000), rounded up.
const HELD_AT_MOST: usize = 8_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_thousand_fast_jobs_complete_once_with_a_bounded_backlog() {
    let store = scratch_store().await;
    let table = format!("\"{}\".jobs", store.schema());
    let client = Client::new(store.clone());
    let began = Instant::now();
    for _ in 0..JOBS / 10_000 {
        client
            .enqueue_many((0..10_000).map(|_| Noop))
            .await
            .unwrap();
    }
    let enqueued = began.elapsed();
    // Statistics gathered while nothing runs, and kept: the planner believes almost no
    // row is `running` for the whole run.
    sqlx::query(&format!(
        "ALTER TABLE {table} SET (autovacuum_enabled = false)"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(&format!("ANALYZE {table}"))
        .execute(store.pool())
        .await
        .unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let worker = Worker::builder(store.clone(), runs.clone())
        .register::<Noop>()
        .queue("default", 10)
        .build()
        .unwrap()
        .start();
    let mut most_held = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while runs.load(Ordering::Relaxed) < JOBS {
        most_held = most_held.max(worker.in_flight());
        assert!(
            Instant::now() < deadline,
            "only {} runs in 600 s",
            runs.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ran = began.elapsed();
    let held_at_last_run = worker.in_flight();
    let stopping = Instant::now();
    let report = worker.shutdown().await;
    let stopped = stopping.elapsed();
    let (completed_once, other): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE state = 'completed' AND attempt = 1 AND errors = '[]'),
                count(*) FILTER (WHERE NOT (state = 'completed' AND attempt = 1 AND errors = '[]'))
         FROM {table}"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    println!(
        "backlog: enqueued {JOBS} in {enqueued:?}; all ran in {ran:?}; held in memory at most \
         {most_held} (at the last run {held_at_last_run}); shutdown took {stopped:?}, \
         released {}; completed once {completed_once}, other {other}; runs {}; \
         RSS now {} MiB, peak {} MiB",
        report.released,
        runs.load(Ordering::Relaxed),
        status_kb("VmRSS:") / 1024,
        status_kb("VmHWM:") / 1024,
    );
    assert_eq!(runs.load(Ordering::Relaxed), JOBS, "a job ran twice");
    assert_eq!((completed_once, other), (JOBS as i64, 0));
    assert!(most_held <= HELD_AT_MOST, "{most_held} jobs held in memory");
    assert_eq!(
        store.stats(&[]).await.unwrap().len(),
        1,
        "only completed jobs left"
    );
}
