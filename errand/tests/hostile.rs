//! Regression tests for the defects hostile testing found (issue 12): each fails on the code
//! before its fix. Sections follow the numbering.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use common::*;
use errand::{
    Client, Job, JobContext, JobError, JobOptions, JobState, Outcome, Store, WorkerError,
};
use serde::{Deserialize, Serialize};

// ── 6. Values that overflow ────────────────────────────────────────────────────────────

/// Returns a snooze or a retry delay of `Duration::MAX`.
#[derive(Serialize, Deserialize)]
struct Forever {
    retry: bool,
}
impl Job for Forever {
    const KIND: &'static str = "forever";
    type State = Probe;
    async fn run(self, cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        cx.state().ran(cx.job_id());
        Ok(if self.retry {
            Outcome::retry_after(Duration::MAX, "much later")
        } else {
            Outcome::snooze(Duration::MAX)
        })
    }
}

on_every_store!(a_delay_of_duration_max_is_clamped_not_a_panic);

async fn a_delay_of_duration_max_is_clamped_not_a_panic<S: Store + Clone>(store: S) {
    let client = Client::new(store.clone());
    let snoozed = client.enqueue(Forever { retry: false }).await.unwrap().id;
    let retried = client.enqueue(Forever { retry: true }).await.unwrap().id;
    let worker = builder(store.clone(), Probe::default())
        .register::<Forever>()
        .queue("default", 2)
        .build()
        .unwrap()
        .start();
    let s = wait_state(&store, snoozed, JobState::Scheduled).await;
    let r = wait_state(&store, retried, JobState::Retryable).await;
    // The worker is alive and runs the next job.
    let next = client.enqueue(Echo { n: 1 }).await.unwrap().id;
    wait_state(&store, next, JobState::Completed).await;
    worker.shutdown().await;
    let in_99_years = chrono::Utc::now() + chrono::TimeDelta::days(99 * 365);
    assert!(s.run_at > in_99_years, "snoozed to {}", s.run_at);
    assert!(r.run_at > in_99_years, "retried at {}", r.run_at);
    assert_eq!(s.attempt, 0, "a snooze gives its attempt back");
    assert_eq!(r.errors[0].message, "much later");
}

#[test]
fn every_builder_duration_is_range_checked() {
    let b = || builder(errand::MemoryStore::new(), Probe::default()).queue("default", 1);
    let setting_of = |r: Result<_, WorkerError>| match r {
        Err(WorkerError::InvalidSetting { setting, reason }) => (setting, reason),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("accepted"),
    };
    let (s, reason) = setting_of(b().lease(Duration::MAX).build());
    assert_eq!(s, "lease");
    assert!(reason.contains("out of range: use 300ms to"), "{reason}");
    assert_eq!(
        setting_of(b().lease(Duration::from_millis(10)).build()).0,
        "lease"
    );
    assert_eq!(
        setting_of(b().poll_interval(Duration::MAX).build()).0,
        "poll_interval"
    );
    assert_eq!(
        setting_of(b().grace_period(Duration::MAX).build()).0,
        "grace_period"
    );
    assert_eq!(
        setting_of(b().default_timeout(Duration::MAX).build()).0,
        "default_timeout"
    );
    assert_eq!(
        setting_of(b().default_timeout(Duration::ZERO).build()).0,
        "default_timeout"
    );
    assert_eq!(
        setting_of(b().rescue_interval(Duration::MAX).build()).0,
        "rescue_interval"
    );
    assert_eq!(
        setting_of(b().retention(Some(Duration::MAX)).build()).0,
        "retention"
    );
    assert_eq!(
        setting_of(b().fetch_cooldown(Duration::MAX).build()).0,
        "fetch_cooldown"
    );
    b().lease(Duration::from_secs(24 * 3600))
        .retention(None)
        .build()
        .unwrap();
}

// ── 3. Job code that blocks its thread ─────────────────────────────────────────────────

/// What the blocking jobs of one test saw: how many ran at once, and how many runs began.
#[derive(Default)]
struct Seen {
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    runs: AtomicUsize,
}

static SEEN: LazyLock<Mutex<HashMap<u64, Arc<Seen>>>> = LazyLock::new(Default::default);

fn seen(test: u64) -> Arc<Seen> {
    SEEN.lock().unwrap().entry(test).or_default().clone()
}

/// Blocks its thread for `ms` (no await), counting how many of its test's jobs run at once.
#[derive(Serialize, Deserialize)]
struct Blocks {
    test: u64,
    ms: u64,
    timeout_ms: Option<u64>,
}
impl Job for Blocks {
    const KIND: &'static str = "blocks";
    type State = Probe;
    async fn run(self, cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        cx.state().ran(cx.job_id());
        let s = seen(self.test);
        s.runs.fetch_add(1, Ordering::SeqCst);
        let now = s.running.fetch_add(1, Ordering::SeqCst) + 1;
        s.most_at_once.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(self.ms));
        s.running.fetch_sub(1, Ordering::SeqCst);
        Ok(Outcome::Complete)
    }
    fn options(&self) -> JobOptions {
        let o = JobOptions::default()
            .max_attempts(2)
            .backoff(errand::Backoff::constant(Duration::from_millis(1)));
        match self.timeout_ms {
            Some(ms) => o.timeout(Duration::from_millis(ms)),
            None => o,
        }
    }
}

fn test_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

on_every_store!(
    blocking_jobs_do_not_starve_heartbeats,
    a_timed_out_job_that_does_not_yield_keeps_its_slot,
);

/// Four jobs block both runtime threads for three leases each while a second worker's
/// rescuer (on a thread of its own) watches for expired leases: the heartbeat, on the
/// keeper thread, keeps them all, so none is rescued and each runs once.
async fn blocking_jobs_do_not_starve_heartbeats<S: Store + Clone>(store: S) {
    let test = test_id();
    let client = Client::new(store.clone());
    let ids: Vec<_> = client
        .enqueue_many((0..4).map(|_| Blocks {
            test,
            ms: 1_500,
            timeout_ms: None,
        }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let lease = Duration::from_millis(500);
    let stop = Arc::new(AtomicBool::new(false));
    let rescuer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut rescued = 0;
                while !stop.load(Ordering::SeqCst) {
                    let r = store.rescue_expired(chrono::Utc::now(), 100).await.unwrap();
                    rescued += r.retried + r.discarded;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                rescued
            })
        })
    };
    let worker = builder(store.clone(), Probe::default())
        .register::<Blocks>()
        .queue("default", 4)
        .lease(lease)
        .build()
        .unwrap()
        .start();
    for &id in &ids {
        wait_state(&store, id, JobState::Completed).await;
    }
    worker.shutdown().await;
    stop.store(true, Ordering::SeqCst);
    let rescued = rescuer.join().unwrap();
    assert_eq!(rescued, 0, "leases of running jobs ran out");
    for &id in &ids {
        let row = store.get(id).await.unwrap().unwrap();
        assert_eq!((row.attempt, row.errors.len()), (1, 0), "{row:?}");
    }
    assert_eq!(seen(test).runs.load(Ordering::SeqCst), 4);
}

/// Concurrency 1, a 300 ms timeout, a first attempt blocking 1.5 s: the retry starts only
/// once the first attempt has really ended, and the record says it did not yield.
async fn a_timed_out_job_that_does_not_yield_keeps_its_slot<S: Store + Clone>(store: S) {
    let test = test_id();
    let client = Client::new(store.clone());
    let id = client
        .enqueue(Blocks {
            test,
            ms: 1_500,
            timeout_ms: Some(300),
        })
        .await
        .unwrap()
        .id;
    let worker = builder(store.clone(), Probe::default())
        .register::<Blocks>()
        .queue("default", 1)
        .lease(Duration::from_millis(500))
        .build()
        .unwrap()
        .start();
    // Attempt 1 times out (after its sleep), attempt 2 likewise: discarded after two.
    let row = wait_state_within(&store, id, JobState::Discarded, Duration::from_secs(20)).await;
    worker.shutdown().await;
    let s = seen(test);
    assert_eq!(s.runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        s.most_at_once.load(Ordering::SeqCst),
        1,
        "the retry started while the timed-out attempt still ran"
    );
    assert_eq!(row.errors.len(), 2, "{row:?}");
    assert!(
        row.errors[0]
            .message
            .contains("did not yield, so it ran on for another"),
        "{}",
        row.errors[0].message
    );
}

/// Captured log lines of this test binary.
static LOGS: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(|| {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let writer = buf.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || LogWriter(writer.clone()))
        .init();
    buf
});

struct LogWriter(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_does_not_yield_is_named_in_a_warning() {
    LazyLock::force(&LOGS);
    let store = errand::MemoryStore::new();
    let id = Client::new(store.clone())
        .enqueue(Blocks {
            test: test_id(),
            ms: 700,
            timeout_ms: None,
        })
        .await
        .unwrap()
        .id;
    let worker = builder(store.clone(), Probe::default())
        .register::<Blocks>()
        .queue("default", 1)
        .stall_warning(Duration::from_millis(200))
        .build()
        .unwrap()
        .start();
    wait_state(&store, id, JobState::Completed).await;
    worker.shutdown().await;
    let logs = logs();
    let line = logs
        .lines()
        .find(|l| l.contains(&format!("job {id} (kind 'blocks') has not yielded for")))
        .unwrap_or_else(|| panic!("no stall warning for job {id} in:\n{logs}"));
    assert!(line.contains("cx.blocking"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_timeout_past_ten_leases_is_named_in_a_warning() {
    LazyLock::force(&LOGS);
    let store = errand::MemoryStore::new();
    let id = Client::new(store.clone())
        .enqueue(Sleeper { ms: 3_600 })
        .await
        .unwrap()
        .id;
    let worker = builder(store.clone(), Probe::default())
        .queue("default", 1)
        .lease(Duration::from_millis(300))
        .build()
        .unwrap()
        .start();
    wait_state(&store, id, JobState::Completed).await;
    worker.shutdown().await;
    let logs = logs();
    assert!(
        logs.lines().any(|l| l.contains(&format!(
            "job {id} (kind 'sleeper') has run for 3 s and has no timeout"
        ))),
        "no long-run warning for job {id} in:\n{logs}"
    );
}
