//! Several worker processes on one database: every job runs exactly once.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use errand::{Client, JobState};
use errand_cli::chaos::LedgerJob;

/// `work_ms` keeps the run long enough for every process to start and take part: with no-op
/// jobs the first process can finish a small batch before the others are up.
async fn processes_share_one_database(db: Db, jobs: usize, workers: usize, work_ms: u64) {
    let ledger = db.ledger().await;
    let client = Client::new(db.store());
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(5000) {
        client
            .enqueue_many(chunk.iter().map(|_| LedgerJob { work_ms }))
            .await
            .unwrap();
    }
    let started = Instant::now();
    db.run_until_done(workers, Duration::from_secs(300)).await;
    let elapsed = started.elapsed();
    assert_eq!(db.count(JobState::Completed).await as usize, jobs);
    let runs = ledger.runs().await.unwrap();
    let mut per_job: HashMap<i64, u32> = HashMap::new();
    let mut per_pid: HashMap<i64, usize> = HashMap::new();
    for (id, _, pid) in &runs {
        *per_job.entry(*id).or_default() += 1;
        *per_pid.entry(*pid).or_default() += 1;
    }
    let dupes = per_job.values().filter(|n| **n > 1).count();
    assert_eq!(dupes, 0, "jobs that ran more than once");
    assert_eq!(per_job.len(), jobs, "every job ran");
    assert_eq!(runs.len(), jobs);
    assert!(
        per_pid.len() >= 2,
        "work was shared between processes: {per_pid:?}"
    );
    eprintln!(
        "{workers} processes, {jobs} jobs in {:.1} s: runs per process {:?}, duplicates 0",
        elapsed.as_secs_f64(),
        per_pid.values().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_three_processes_run_2000_jobs_once() {
    processes_share_one_database(Db::sqlite().await, 2000, 3, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_four_processes_run_20000_jobs_once() {
    processes_share_one_database(Db::postgres().await, 20_000, 4, 0).await;
}
