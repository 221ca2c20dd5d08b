//! Worker processes under signals: SIGTERM with a grace period, a worker paused with
//! SIGSTOP past its leases that cannot overwrite the newer attempt when it resumes, and a
//! worker that stops with the process that started it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use errand::store::Store;
use errand::{Client, JobState};
use errand_cli::chaos::LedgerJob;

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

async fn wait_runs(db: &Db, n: usize) {
    let ledger = db.ledger().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledger.runs().await.unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} runs started within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sigterm_finishes_within_grace(db: Db) {
    db.ledger().await;
    let client = Client::new(db.store());
    let short: Vec<i64> = client
        .enqueue_many((0..4).map(|_| LedgerJob { work_ms: 300 }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let long: Vec<i64> = client
        .enqueue_many((0..4).map(|_| LedgerJob { work_ms: 60_000 }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut worker = db.worker(&[
        "--concurrency",
        "8",
        "--grace-ms",
        "1000",
        "--poll-ms",
        "100",
    ]);
    wait_runs(&db, 8).await;
    let sent = Instant::now();
    signal(worker.id(), "-TERM");
    let status = wait_exit(&mut worker, Duration::from_secs(10)).await;
    let took = sent.elapsed();
    assert!(status.success(), "worker exited with {status}");
    assert!(
        took < Duration::from_millis(2_000),
        "exited {took:?} after SIGTERM (grace 1 s)"
    );
    let store = db.store();
    for id in short {
        assert_eq!(
            store.get(id).await.unwrap().unwrap().state,
            JobState::Completed
        );
    }
    for id in long {
        let row = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            (row.state, row.attempt),
            (JobState::Available, 0),
            "job {id} returned uncharged"
        );
        assert!(row.errors.is_empty());
    }
    eprintln!(
        "SIGTERM: exited 0 after {:.2} s; 4 short jobs completed, 4 long returned to the queue",
        took.as_secs_f64()
    );
}

async fn paused_worker_cannot_overwrite_newer_attempt(db: Db) {
    db.ledger().await;
    let ids: Vec<i64> = Client::new(db.store())
        .enqueue_many((0..3).map(|_| LedgerJob { work_ms: 1_500 }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let args = [
        "--concurrency",
        "3",
        "--lease-ms",
        "600",
        "--poll-ms",
        "100",
    ];
    // Killed when dropped, even stopped (`-STOP` below) by a test that fails.
    let mut first = Worker(
        db.worker_command(&args)
            .stderr(Stdio::piped())
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let log = Arc::new(Mutex::new(String::new()));
    {
        let (stderr, log) = (first.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
            }
        });
    }
    wait_runs(&db, 3).await;
    signal(first.id(), "-STOP");
    let mut second = db.worker(&[&args[..], &["--exit-when-done"]].concat());
    let status = wait_exit(&mut second, Duration::from_secs(60)).await;
    assert!(status.success());
    let store = db.store();
    let mut after_second = Vec::new();
    for id in &ids {
        after_second.push(store.get(*id).await.unwrap().unwrap());
    }
    signal(first.id(), "-CONT");
    // The resumed worker learns its leases are gone (heartbeat) or has its late outcome
    // fenced out (completer): either way it says so.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = log.lock().unwrap().clone();
        if text.contains("lease is gone") || text.contains("outcome ignored") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "resumed worker never noticed its lost leases:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give any outcome it might still write a chance to land, then check nothing changed.
    signal(first.id(), "-TERM");
    wait_exit(&mut first, Duration::from_secs(15)).await;
    for before in after_second {
        let row = store.get(before.id).await.unwrap().unwrap();
        assert_eq!(
            row, before,
            "the paused worker changed job {} after resuming",
            before.id
        );
        assert_eq!((row.state, row.attempt), (JobState::Completed, 2));
        assert!(row
            .attempted_by
            .as_deref()
            .unwrap_or("")
            .contains(&format!(":{}:", second.id())));
        assert!(row.errors[0].message.contains("lease expired"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigterm_finishes_within_grace() {
    sigterm_finishes_within_grace(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigterm_finishes_within_grace() {
    sigterm_finishes_within_grace(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_paused_worker_cannot_overwrite_newer_attempt() {
    paused_worker_cannot_overwrite_newer_attempt(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_paused_worker_cannot_overwrite_newer_attempt() {
    paused_worker_cannot_overwrite_newer_attempt(Db::postgres().await).await;
}

/// `chaos-worker --exit-with-parent` (how `errand bench --phases fleet` starts its
/// workers): when its standard input closes — the process holding the pipe exited, even
/// killed — it stops as on SIGTERM, leaving the worker registry, instead of running on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stops_when_its_parent_goes() {
    let db = Db::sqlite().await;
    let store = db.store();
    let mut worker = Worker(
        db.worker_command(&["--exit-with-parent"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("start worker process"),
    );
    let pid = worker.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store.workers().await.unwrap().iter().any(|w| w.pid == pid) {
        assert!(
            Instant::now() < deadline,
            "worker {pid} not registered in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still running with its input open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        worker.try_wait().unwrap().is_none(),
        "exited with its input open"
    );
    drop(worker.stdin.take());
    let status = wait_exit(&mut worker, Duration::from_secs(20)).await;
    assert!(status.success(), "worker exited with {status}");
    let left = store.workers().await.unwrap();
    assert!(
        left.iter().all(|w| w.pid != pid),
        "still registered: {left:?}"
    );
}
