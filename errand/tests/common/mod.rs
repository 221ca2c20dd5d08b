//! Jobs and helpers shared by the end-to-end tests.
#![allow(dead_code, unreachable_pub, unused_macros)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use errand::store::NewJob;
use errand::store::Store;
use errand::{
    Backoff, Job, JobContext, JobError, JobId, JobOptions, JobRow, JobState, Outcome, Worker,
    WorkerBuilder,
};
use serde::{Deserialize, Serialize};

/// What the test jobs report back: runs per job id, and a signal per run.
#[derive(Clone, Default)]
pub struct Probe {
    runs: Arc<Mutex<HashMap<JobId, u32>>>,
    pub started: Arc<tokio::sync::Notify>,
}

impl Probe {
    pub fn ran(&self, id: JobId) {
        *self.runs.lock().unwrap().entry(id).or_default() += 1;
        self.started.notify_waiters();
    }
    pub fn runs(&self, id: JobId) -> u32 {
        self.runs.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
    pub fn total(&self) -> u32 {
        self.runs.lock().unwrap().values().sum()
    }
}

#[derive(Serialize, Deserialize)]
pub struct Echo {
    pub n: u32,
}
impl Job for Echo {
    const KIND: &'static str = "echo";
    type State = Probe;
    async fn run(self, cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        cx.state().ran(cx.job_id());
        Ok(Outcome::Complete)
    }
}

/// Fails its first `fail` attempts, then succeeds.
#[derive(Serialize, Deserialize)]
pub struct Flaky {
    pub fail: i32,
}
impl Job for Flaky {
    const KIND: &'static str = "flaky";
    type State = Probe;
    async fn run(self, cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        cx.state().ran(cx.job_id());
        if cx.attempt() <= self.fail {
            return Err(JobError::msg(format!(
                "flaky failure on attempt {}",
                cx.attempt()
            )));
        }
        Ok(Outcome::Complete)
    }
    fn options(&self) -> JobOptions {
        JobOptions::new()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(10)))
    }
}

#[derive(Serialize, Deserialize)]
pub struct Panicker;
impl Job for Panicker {
    const KIND: &'static str = "panicker";
    type State = Probe;
    async fn run(self, cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        cx.state().ran(cx.job_id());
        let v: Vec<u32> = Vec::new();
        if cx.attempt() > 0 {
            panic!("kaboom: index {} of {}", 3, v.len());
        }
        Ok(Outcome::Complete)
    }
    fn options(&self) -> JobOptions {
        JobOptions::new()
            .max_attempts(2)
            .backoff(Backoff::constant(Duration::from_millis(10)))
    }
}

/// Sleeps `ms`; with a timeout below that it times out.
#[derive(Serialize, Deserialize)]
pub struct Sleeper {
    pub ms: u64,
}
impl Job for Sleeper {
    const KIND: &'static str = "sleeper";
    type State = Probe;
    async fn run(self, cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        cx.state().ran(cx.job_id());
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(Outcome::Complete)
    }
    fn options(&self) -> JobOptions {
        JobOptions::new().max_attempts(1)
    }
}

/// Snoozes on its first run, completes on the second.
#[derive(Serialize, Deserialize)]
pub struct Snoozer;
impl Job for Snoozer {
    const KIND: &'static str = "snoozer";
    type State = Probe;
    async fn run(self, cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        cx.state().ran(cx.job_id());
        if cx.state().runs(cx.job_id()) == 1 {
            return Ok(Outcome::snooze(Duration::from_millis(50)));
        }
        Ok(Outcome::Complete)
    }
}

/// Ends with the outcome its field names.
#[derive(Serialize, Deserialize)]
pub struct Ender {
    pub how: String,
}
impl Job for Ender {
    const KIND: &'static str = "ender";
    type State = Probe;
    async fn run(self, cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        cx.state().ran(cx.job_id());
        match self.how.as_str() {
            "cancel" => Ok(Outcome::cancel("no longer needed")),
            "discard" => Err(JobError::discard("corrupt input")),
            "retry" => Ok(Outcome::retry_after(Duration::from_millis(10), "try later")),
            _ => Ok(Outcome::Complete),
        }
    }
    fn options(&self) -> JobOptions {
        JobOptions::new().max_attempts(2)
    }
}

/// Burns CPU on the blocking pool.
#[derive(Serialize, Deserialize)]
pub struct Cruncher {
    pub ms: u64,
}
impl Job for Cruncher {
    const KIND: &'static str = "cruncher";
    type State = Probe;
    async fn run(self, cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        cx.state().ran(cx.job_id());
        let ms = self.ms;
        let spins = cx
            .blocking(move || {
                let end = std::time::Instant::now() + Duration::from_millis(ms);
                let mut n = 0u64;
                while std::time::Instant::now() < end {
                    n = n.wrapping_add(1);
                }
                n
            })
            .await?;
        assert!(spins > 0);
        Ok(Outcome::Complete)
    }
}

/// A worker of [`builder`] on `default` at concurrency 4, started.
pub fn started<S: Store>(store: S, probe: Probe) -> errand::WorkerHandle {
    builder(store, probe)
        .queue("default", 4)
        .build()
        .unwrap()
        .start()
}

/// Registers every test job.
pub fn builder<S: Store>(store: S, probe: Probe) -> WorkerBuilder<S, Probe> {
    Worker::builder(store, probe)
        .register::<Echo>()
        .register::<Flaky>()
        .register::<Panicker>()
        .register::<Sleeper>()
        .register::<Snoozer>()
        .register::<Ender>()
        .register::<Cruncher>()
        .poll_interval(Duration::from_millis(50))
        .schedule_interval(Duration::from_millis(20))
        .rescue_interval(Duration::from_millis(100))
}

/// Polls `check` every 10 ms until it returns true; panics after `limit` with `what`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until job `id` is in `state` and returns it.
pub async fn wait_state<S: Store>(store: &S, id: JobId, state: JobState) -> JobRow {
    wait_state_within(store, id, state, Duration::from_secs(10)).await
}

/// Waits at most `limit` until job `id` is in `state` and returns it.
pub async fn wait_state_within<S: Store>(
    store: &S,
    id: JobId,
    state: JobState,
    limit: Duration,
) -> JobRow {
    let mut last = None;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let row = store.get(id).await.unwrap().expect("job exists");
        if row.state == state {
            return row;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "job {id} never reached {state}; last seen: {:?}",
                last.unwrap_or(row)
            );
        }
        last = Some(row);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A fresh SQLite store in its own temp dir (kept for the test's duration).
#[cfg(feature = "sqlite")]
pub async fn sqlite() -> (errand::SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("errand.db");
    let store = errand::SqliteStore::open(path.to_str().unwrap())
        .await
        .unwrap();
    (store, dir)
}

/// A second store on `first`'s schema with a pool and listener of its own, sharing nothing
/// in memory with it, as another process would have.
#[cfg(feature = "postgres")]
pub async fn other_process(first: &errand::PgStore, app: &str) -> errand::PgStore {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let opts: PgConnectOptions = errand_postgres::testing::database_url().parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(opts.application_name(app))
        .await
        .unwrap();
    errand::PgStore::builder()
        .pool(pool)
        .schema(first.schema())
        .open()
        .await
        .unwrap()
}

/// Expands each named `async fn(store)` into one test per store: `memory`, `sqlite` and,
/// with the `postgres` feature, `postgres` (each on a fresh store).
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(errand::MemoryStore::new()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (store, _dir) = super::sqlite().await;
                super::$name(store).await;
            }
            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(errand_postgres::testing::scratch_store().await).await;
            }
        }
    )*};
}

/// A job inserted straight into the store, bypassing the client's checks: for bad input.
pub fn raw_job(kind: &str, args: &str) -> NewJob {
    NewJob {
        kind: kind.into(),
        queue: "default".into(),
        args: args.into(),
        priority: 0,
        max_attempts: 5,
        run_at: chrono::Utc::now(),
        tags: vec![],
        unique_key: None,
        unique_states: Default::default(),
        unique_for_ms: None,
        backoff: Some(Backoff::constant(Duration::from_secs(3600))),
        timeout_ms: None,
        partition_key: None,
    }
}
