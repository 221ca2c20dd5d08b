//! Kill -9 a worker process mid-run, start another, and prove that every job ends, none is
//! lost, and the only jobs that ran twice are those the killed worker held.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use errand::{Client, JobState, ListFilter};
use errand_cli::chaos::LedgerJob;

const JOBS: usize = 500;
const LEASE_MS: u64 = 1500;

async fn sigkill_mid_run(db: Db) {
    let ledger = db.ledger().await;
    let store = db.store();
    let ids: HashSet<i64> = Client::new(store.clone())
        .enqueue_many((0..JOBS).map(|_| LedgerJob { work_ms: 30 }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids.len(), JOBS);
    let lease = LEASE_MS.to_string();
    let args = [
        "--concurrency",
        "10",
        "--poll-ms",
        "100",
        "--lease-ms",
        lease.as_str(),
    ];

    let mut first = db.worker(&args);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = ledger.runs().await.unwrap().len();
        if runs >= JOBS / 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "first worker ran only {runs} jobs in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("SIGKILL the worker");
    first.wait().unwrap();
    let killed_at = Instant::now();
    let held: HashSet<i64> = store
        .list(&ListFilter::new().state(JobState::Running).limit(1000))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert!(
        !held.is_empty(),
        "the kill should land while jobs are running"
    );
    assert!((db.count(JobState::Completed).await as usize) < JOBS);

    let mut second = db.worker(&[&args[..], &["--exit-when-done"]].concat());
    // Rescue must come within lease + heartbeat interval of the kill.
    let rescue_deadline = Duration::from_millis(LEASE_MS + LEASE_MS / 3 + 2000);
    loop {
        let still_held = store
            .list(&ListFilter::new().state(JobState::Running).limit(1000))
            .await
            .unwrap()
            .iter()
            .filter(|j| held.contains(&j.id) && j.attempt == 1)
            .count();
        if still_held == 0 {
            break;
        }
        assert!(
            killed_at.elapsed() < rescue_deadline,
            "{still_held} jobs of the killed worker not rescued within {rescue_deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rescued_after = killed_at.elapsed();
    let status = wait_exit(&mut second, Duration::from_secs(120)).await;
    assert!(status.success(), "second worker exited with {status}");

    assert_eq!(
        db.count(JobState::Completed).await as usize,
        JOBS,
        "every job completed"
    );
    let mut runs: HashMap<i64, u32> = HashMap::new();
    for (job, _, _) in ledger.runs().await.unwrap() {
        *runs.entry(job).or_default() += 1;
    }
    let missing: Vec<_> = ids.iter().filter(|id| !runs.contains_key(id)).collect();
    assert!(missing.is_empty(), "jobs never ran: {missing:?}");
    let repeated: HashSet<i64> = runs
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    let unexpected: Vec<_> = repeated.difference(&held).collect();
    assert!(
        unexpected.is_empty(),
        "jobs ran twice without being held by the killed worker: {unexpected:?}"
    );
    assert!(runs.values().all(|n| *n <= 2), "no job ran more than twice");
    for id in &repeated {
        let job = store.get(*id).await.unwrap().unwrap();
        assert!(
            job.errors
                .iter()
                .any(|e| e.message.contains("lease expired")),
            "rescued job {id} records why it ran again: {:?}",
            job.errors
        );
    }
    eprintln!(
        "crash test: {JOBS} jobs, {} held by the killed worker, {} ran twice, all completed; \
         held jobs rescued {:.2} s after the kill (lease {} ms)",
        held.len(),
        repeated.len(),
        rescued_after.as_secs_f64(),
        LEASE_MS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkill_mid_run_loses_nothing() {
    sigkill_mid_run(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigkill_mid_run_loses_nothing() {
    sigkill_mid_run(Db::postgres().await).await;
}

/// A job records its effect and completes in one transaction; the process dies right after
/// the commit. The job is never run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_completion_committed_with_the_effect_never_reruns() {
    let db = Db::postgres().await;
    let ledger = db.ledger().await;
    let ids: Vec<i64> = Client::new(db.store())
        .enqueue_many((0..5).map(|_| LedgerJob { work_ms: 0 }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut first = db.worker(&[
        "--concurrency",
        "1",
        "--lease-ms",
        "1000",
        "--tx-complete",
        "--abort-after-commit",
    ]);
    let status = wait_exit(&mut first, Duration::from_secs(60)).await;
    assert!(
        !status.success(),
        "the first worker aborts after its first commit"
    );
    let after_crash = ledger.runs().await.unwrap();
    assert_eq!(after_crash.len(), 1, "one job committed before the crash");
    let crashed_job = after_crash[0].0;

    let mut second = db.worker(&[
        "--concurrency",
        "2",
        "--lease-ms",
        "1000",
        "--tx-complete",
        "--exit-when-done",
    ]);
    assert!(wait_exit(&mut second, Duration::from_secs(60))
        .await
        .success());
    let runs = ledger.runs().await.unwrap();
    let mut per_job: HashMap<i64, usize> = HashMap::new();
    for (id, _, _) in &runs {
        *per_job.entry(*id).or_default() += 1;
    }
    assert_eq!(runs.len(), 5, "each job's effect exactly once: {runs:?}");
    assert!(ids.iter().all(|id| per_job.get(id) == Some(&1)));
    let job = db.store().get(crashed_job).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.attempt, 1, "never attempted again");
    assert!(job.errors.is_empty(), "never rescued: {:?}", job.errors);
}
