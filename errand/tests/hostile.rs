//! Regression tests for the defects hostile testing found (issue 12): each fails on the code
//! before its fix. Sections follow the issue's numbering.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use common::*;
use errand::store::Store;
use errand::{Client, Job, JobContext, JobError, JobOptions, JobState, Outcome, WorkerError};
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
        setting_of(
            b().job_defaults(JobOptions::new().timeout(Duration::MAX))
                .build()
        )
        .0,
        "job_defaults"
    );
    assert_eq!(
        setting_of(
            b().job_defaults(JobOptions::new().timeout(Duration::ZERO))
                .build()
        )
        .0,
        "job_defaults"
    );
    assert_eq!(
        setting_of(b().prune_interval(Duration::ZERO).build()).0,
        "prune_interval"
    );
    assert_eq!(
        setting_of(b().rescue_interval(Duration::MAX).build()).0,
        "rescue_interval"
    );
    assert_eq!(
        setting_of(
            b().retention(errand::Retention::default().discarded(Some(Duration::MAX)))
                .build()
        )
        .0,
        "retention"
    );
    assert_eq!(
        setting_of(b().fetch_cooldown(Duration::MAX).build()).0,
        "fetch_cooldown"
    );
    b().lease(Duration::from_secs(24 * 3600))
        .retention(errand::Retention::forever())
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
        let o = JobOptions::new()
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
                // A Postgres pool's connections belong to the runtime that opened them:
                // this thread's runtime ends first, so it gets connections of its own.
                let store: Arc<dyn Store> = store.detached().unwrap_or_else(|| Arc::new(store));
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
    // Attempt 1 times out (after its sleep), attempt 2 likewise: discarded after two.
    let (test, row) = blocked_until_discarded(store, 1_500, 300).await;
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

/// On a runtime of one thread the job's blocking sleep holds the very thread its executor
/// waits on: the executor sees the job end before it sees its timer, yet the attempt ran
/// past its timeout and is timed out all the same (before, it was recorded completed).
#[tokio::test(flavor = "current_thread")]
async fn a_job_that_ends_past_its_timeout_unseen_by_the_timer_timed_out() {
    let (test, row) = blocked_until_discarded(errand::MemoryStore::new(), 400, 100).await;
    assert_eq!(seen(test).runs.load(Ordering::SeqCst), 2);
    assert_eq!(row.errors.len(), 2, "{row:?}");
    for e in &row.errors {
        assert!(
            e.message
                .contains("did not yield, so it ran on for another"),
            "{}",
            e.message
        );
    }
}

/// Runs a `Blocks` job sleeping `ms` under a timeout of `timeout_ms` (concurrency 1, a
/// 500 ms lease) until it is discarded; its test id and final row.
async fn blocked_until_discarded<S: Store + Clone>(
    store: S,
    ms: u64,
    timeout_ms: u64,
) -> (u64, errand::JobRow) {
    let test = test_id();
    let id = Client::new(store.clone())
        .enqueue(Blocks {
            test,
            ms,
            timeout_ms: Some(timeout_ms),
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
    let row = wait_state_within(&store, id, JobState::Discarded, Duration::from_secs(20)).await;
    worker.shutdown().await;
    (test, row)
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

// ── 1. Bad rows and values that cannot round-trip ──────────────────────────────────────

/// Carries floats at the edges of `f64`.
#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Floats {
    values: Vec<f64>,
}
impl Job for Floats {
    const KIND: &'static str = "floats";
    type State = Probe;
    async fn run(self, _cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        Ok(Outcome::Complete)
    }
}

fn edge_floats() -> Floats {
    Floats {
        values: vec![
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            1e300,
            -1.2345678901234567e-300,
            1.7976931348623155e308,
            0.1,
            123_456_789.123_456_79,
            2f64.powi(60) + 1.0,
        ],
    }
}

on_every_store!(edge_floats_read_back_exactly_on_every_store);

async fn edge_floats_read_back_exactly_on_every_store<S: Store + Clone>(store: S) {
    let id = Client::new(store.clone())
        .enqueue(edge_floats())
        .await
        .unwrap()
        .id;
    let row = store.get(id).await.unwrap().unwrap();
    let back: Floats = serde_json::from_str(&row.args)
        .unwrap_or_else(|e| panic!("stored payload does not read back: {e}: {}", row.args));
    let bits = |f: &Floats| f.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&edge_floats()), "{}", row.args);
}

/// Nests `levels` arrays, serializing without building anything (a hostile depth).
struct Deep(usize);
impl Serialize for Deep {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(1))?;
        if self.0 > 1 {
            seq.serialize_element(&Deep(self.0 - 1))?;
        }
        seq.end()
    }
}

/// A payload of any shape.
#[derive(Serialize, Deserialize)]
struct Anything {
    #[serde(skip_deserializing)]
    deep: Option<DeepField>,
    amount: Option<f64>,
}
#[derive(Default)]
struct DeepField(usize);
impl Serialize for DeepField {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        Deep(self.0).serialize(s)
    }
}
impl Job for Anything {
    const KIND: &'static str = "anything";
    type State = Probe;
    async fn run(self, _cx: JobContext<Probe>) -> Result<Outcome, JobError> {
        Ok(Outcome::Complete)
    }
}

on_every_store!(values_that_cannot_round_trip_are_refused_alike_and_write_nothing);

async fn values_that_cannot_round_trip_are_refused_alike_and_write_nothing<S: Store + Clone>(
    store: S,
) {
    use errand::{Backoff, EnqueueError, JobOptions};
    let client = Client::new(store.clone());
    let job = |amount: Option<f64>, deep: usize| Anything {
        deep: (deep > 0).then_some(DeepField(deep)),
        amount,
    };
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        match client.enqueue(job(Some(bad), 0)).await {
            Err(EnqueueError::NonFiniteNumber { at, .. }) => assert_eq!(at, "field `amount`"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    for depth in [128, 100_000] {
        match client.enqueue(job(None, depth)).await {
            Err(e @ EnqueueError::TooDeep { .. }) => assert!(e.to_string().contains("127")),
            other => panic!("depth {depth}: {other:?}"),
        }
    }
    client
        .enqueue(job(None, 126))
        .await
        .expect("126 arrays inside the object fit");
    let nan_backoff = Backoff::Constant {
        delay_ms: 1000,
        jitter: f64::NAN,
    };
    let refused = [
        JobOptions::new().backoff(nan_backoff),
        JobOptions::new().backoff(Backoff::constant(Duration::ZERO)),
        JobOptions::new().unique_key("k".repeat(1024 * 1024)),
        (0..100_000).fold(JobOptions::new(), |o, i| o.tag(format!("tag{i}"))),
    ];
    for opts in refused {
        match client.enqueue_with(job(Some(1.0), 0), opts).await {
            Err(EnqueueError::InvalidOption { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    let all = store.count(&errand::ListFilter::default()).await.unwrap();
    assert_eq!(all, 1, "only the job that fits was written");
}

/// `n` readable jobs and one more, to be made unreadable: their ids.
async fn good_and_bad<S: Store + Clone>(
    client: &Client<S>,
    n: u32,
) -> (Vec<errand::JobId>, errand::JobId) {
    let good: Vec<_> = client
        .enqueue_many((0..n).map(|n| Echo { n }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let bad = client.enqueue(Echo { n: 99 }).await.unwrap().id;
    (good, bad)
}

/// Runs a worker on `default` until each of `good` completed once and `bad` was discarded
/// without running; returns `bad`'s row.
async fn run_past_unreadable<S: Store + Clone>(
    store: &S,
    good: &[errand::JobId],
    bad: errand::JobId,
) -> errand::JobRow {
    let probe = Probe::default();
    let worker = started(store.clone(), probe.clone());
    for &id in good {
        let row = wait_state(store, id, JobState::Completed).await;
        assert_eq!(row.attempt, 1);
    }
    let row = wait_state(store, bad, JobState::Discarded).await;
    worker.shutdown().await;
    assert_eq!(probe.runs(bad), 0, "the unreadable job never ran");
    assert!(good.iter().all(|&id| probe.runs(id) == 1));
    row
}

/// Enqueues 30 readable jobs and one made unreadable behind the store's back, then lets a
/// worker claim them together: the unreadable one is discarded with its column named, the
/// 30 run once each, and the row still lists, shows and cancels.
async fn one_unreadable_row_affects_only_itself<S: Store + Clone>(
    store: S,
    corrupt: impl AsyncFnOnce(errand::JobId, errand::JobId),
) {
    let client = Client::new(store.clone());
    let (good, bad) = good_and_bad(&client, 30).await;
    // A second unreadable job on a queue no worker runs, for the operator's commands.
    let idle = client
        .enqueue_with(Echo { n: 100 }, errand::JobOptions::new().queue("idle"))
        .await
        .unwrap()
        .id;
    corrupt(bad, idle).await;
    let listed = store
        .list(&errand::ListFilter::default())
        .await
        .expect("list reads past the bad rows");
    assert_eq!(listed.len(), 32);
    let shown = store.get(idle).await.unwrap().unwrap();
    let problem = shown
        .corrupt
        .clone()
        .expect("the row says it is unreadable");
    assert!(problem.contains("column backoff"), "{problem}");
    let row = run_past_unreadable(&store, &good, bad).await;
    let last = row.errors.last().expect("an error is recorded");
    assert!(
        last.message.contains("could not be read") && last.message.contains("column backoff"),
        "{}",
        last.message
    );
    match store.cancel(idle, chrono::Utc::now()).await.unwrap() {
        errand::CancelResult::Cancelled(row) => assert!(row.corrupt.is_some()),
        other => panic!("{other:?}"),
    }
}

/// A backoff as a JSON `null` jitter, what serde_json wrote for `jitter: f64::NAN`.
const NULL_JITTER: &str = r#"{"mode":"constant","delay_ms":1000,"jitter":null}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreadable_row_affects_only_itself_sqlite() {
    let (store, _dir) = sqlite().await;
    let pool = store.pool().clone();
    one_unreadable_row_affects_only_itself(store, async move |bad, idle| {
        for id in [bad, idle] {
            sqlx::query("UPDATE errand_jobs SET backoff = ?, errors = 'not json' WHERE id = ?")
                .bind(NULL_JITTER)
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
    })
    .await;
}

/// SQLite stores any value in any column: a BLOB where the arguments belong and text that is
/// not UTF-8 where the tags belong (written behind the store's back) make that one job
/// unreadable — discarded with the columns named — while the claim that took it runs the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_where_text_belongs_affects_only_its_job_sqlite() {
    a_blob_where_text_belongs(false).await;
}

/// The same, on a queue under a per-key limit, which is claimed in a transaction of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_where_text_belongs_affects_only_its_job_metered_sqlite() {
    a_blob_where_text_belongs(true).await;
}

async fn a_blob_where_text_belongs(metered: bool) {
    let (store, _dir) = sqlite().await;
    let client = Client::new(store.clone());
    if metered {
        client
            .set_queue_limits("default", errand::QueueLimits::default().max_per_key(2))
            .await
            .unwrap();
    }
    let (good, bad) = good_and_bad(&client, 10).await;
    sqlx::query(
        "UPDATE errand_jobs SET args = X'00FF10', tags = CAST(X'FFFE' AS TEXT) WHERE id = ?",
    )
    .bind(bad)
    .execute(store.pool())
    .await
    .unwrap();
    let shown = store.get(bad).await.unwrap().expect("the row reads");
    let problem = shown.corrupt.expect("the row says it is unreadable");
    assert!(problem.contains("column args"), "{problem}");
    let listed = store.list(&errand::ListFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 11, "list reads past the bad row");
    let row = run_past_unreadable(&store, &good, bad).await;
    let last = row.errors.last().expect("an error is recorded");
    assert!(
        last.message.contains("column args") && last.message.contains("column tags"),
        "{}",
        last.message
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreadable_row_affects_only_itself_postgres() {
    let store = errand_postgres::testing::scratch_store().await;
    let (pool, table) = (store.pool().clone(), format!("\"{}\".jobs", store.schema()));
    one_unreadable_row_affects_only_itself(store, async move |bad, idle| {
        for id in [bad, idle] {
            sqlx::query(&format!(
                "UPDATE {table} SET backoff = $1::jsonb, errors = '{{\"not\": \"a list\"}}' WHERE id = $2"
            ))
            .bind(NULL_JITTER)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        }
    })
    .await;
}

// ── 4. A worker whose clock is wrong ───────────────────────────────────────────────────

/// A healthy worker runs jobs three leases long while a second worker, its clock 40 s
/// fast, rescues and promotes on the same Postgres schema: it takes no running job and
/// starts no scheduled job early, because both read the database's clock.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_fast_clock_steals_nothing_on_postgres() {
    let store = errand_postgres::testing::scratch_store().await;
    let client = Client::new(store.clone());
    let ids: Vec<_> = client
        .enqueue_many((0..4).map(|_| Sleeper { ms: 3_000 }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let later = client
        .enqueue_with(
            Echo { n: 1 },
            errand::JobOptions::new().delay(Duration::from_secs(20)),
        )
        .await
        .unwrap()
        .id;
    let probe = Probe::default();
    let healthy = builder(store.clone(), probe.clone())
        .queue("default", 4)
        .lease(Duration::from_secs(1))
        .build()
        .unwrap()
        .start();
    // Wait until all four run before the fast worker starts.
    wait_for(
        "the four jobs to start",
        Duration::from_secs(10),
        || async { ids.iter().all(|&id| probe.runs(id) == 1) },
    )
    .await;
    let fast = builder(store.clone(), Probe::default())
        .queue("elsewhere", 1)
        .clock_skew(chrono::TimeDelta::seconds(40))
        .rescue_interval(Duration::from_millis(50))
        .schedule_interval(Duration::from_millis(50))
        .build()
        .unwrap()
        .start();
    for &id in &ids {
        let row = wait_state(&store, id, JobState::Completed).await;
        assert_eq!((row.attempt, row.errors.len()), (1, 0), "{row:?}");
        assert_eq!(probe.runs(id), 1);
    }
    let scheduled = store.get(later).await.unwrap().unwrap();
    fast.shutdown().await;
    healthy.shutdown().await;
    assert_eq!(
        scheduled.state,
        JobState::Scheduled,
        "a job due in 20 s was promoted early"
    );
}

#[derive(Serialize, Deserialize)]
struct Mailer;
impl Job for Mailer {
    const KIND: &'static str = "mailer";
    const QUEUE: &'static str = "mail-not-worked-here";
    type State = Probe;
    async fn run(self, _: JobContext<Probe>) -> Result<Outcome, JobError> {
        Ok(Outcome::Complete)
    }
}

/// A type whose queue no worker here works is the mistake that strands jobs: `build` names
/// the kind and the queue; the type's queue is where its jobs go unless a call says otherwise.
#[tokio::test]
async fn a_kind_whose_queue_is_not_worked_is_named_at_build() {
    LazyLock::force(&LOGS);
    let store = errand::MemoryStore::new();
    let client = Client::new(store.clone());
    let typed = client.enqueue(Mailer).await.unwrap().id;
    let moved = client
        .enqueue_with(Mailer, JobOptions::new().queue("elsewhere"))
        .await
        .unwrap()
        .id;
    assert_eq!(
        store.get(typed).await.unwrap().unwrap().queue,
        "mail-not-worked-here"
    );
    assert_eq!(store.get(moved).await.unwrap().unwrap().queue, "elsewhere");
    builder(store, Probe::default())
        .register::<Mailer>()
        .queue("default", 1)
        .build()
        .unwrap();
    let logs = logs();
    assert!(
        logs.contains("jobs of kind 'mailer' go to queue 'mail-not-worked-here'")
            && logs.contains(".queue(\"mail-not-worked-here\", n)"),
        "{logs}"
    );
    assert!(!logs.contains("kind 'echo' go to"), "{logs}");
}
