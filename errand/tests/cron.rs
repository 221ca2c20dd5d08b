//! Cron end to end: workers that carry the same entry run each tick once, on the in-memory
//! store, a real SQLite file and a real Postgres schema.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use common::{sqlite, wait_for};
use errand::store::Store;
use errand::{
    Job, JobContext, JobError, JobId, JobOptions, JobState, ListFilter, Outcome, Worker,
    WorkerError,
};
use serde::{Deserialize, Serialize};

/// The ticks that ran: (tick, job id), in the order they ran.
type Ran = Arc<Mutex<Vec<(DateTime<Utc>, JobId)>>>;

#[derive(Serialize, Deserialize)]
struct Tick {
    report: String,
}

impl Job for Tick {
    const KIND: &'static str = "tick";
    type State = Ran;

    async fn run(self, cx: JobContext<Ran>) -> Result<Outcome, JobError> {
        assert_eq!(self.report, "sales", "the entry's payload arrives");
        cx.state()
            .lock()
            .unwrap()
            .push((cx.scheduled_at(), cx.job_id()));
        Ok(Outcome::Complete)
    }
}

/// A job type other than `Tick`, with the same state.
#[derive(Serialize, Deserialize)]
struct Other;
impl Job for Other {
    const KIND: &'static str = "other";
    type State = Ran;
    async fn run(self, _cx: JobContext<Ran>) -> Result<Outcome, JobError> {
        Ok(Outcome::Complete)
    }
}

fn job() -> Tick {
    Tick {
        report: "sales".into(),
    }
}

fn worker<S: Store>(store: S, ran: &Ran, id: &str) -> errand::WorkerHandle {
    worker_on(store, ran, id, "* * * * * *")
}

fn worker_on<S: Store>(store: S, ran: &Ran, id: &str, schedule: &str) -> errand::WorkerHandle {
    Worker::builder(store, ran.clone())
        .register::<Tick>()
        .queue("default", 2)
        .cron("every-second", schedule, job())
        .worker_id(id)
        .schedule_interval(Duration::from_millis(20))
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
        .start()
}

/// The ticks that ran are distinct (none ran twice), consecutive (none skipped while
/// workers ran) and on the second.
fn each_tick_once(ran: &[(DateTime<Utc>, JobId)]) {
    let mut ticks: Vec<DateTime<Utc>> = ran.iter().map(|(t, _)| *t).collect();
    ticks.sort();
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(1), "{ticks:?}");
    }
    assert!(ticks.iter().all(|t| t.nanosecond() == 0), "{ticks:?}");
}

/// Three processes carrying a per-second entry read in Europe/Berlin, for over ten seconds:
/// each tick runs once.
async fn three_processes_run_each_berlin_tick_once<S: Store + Clone>(stores: [S; 3]) {
    let ran = Ran::default();
    let handles: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, s)| worker_on(s, &ran, &format!("p{i}"), "TZ=Europe/Berlin * * * * * *"))
        .collect();
    wait_for(
        "eleven ticks ran (ten seconds)",
        Duration::from_secs(30),
        || async { ran.lock().unwrap().len() >= 11 },
    )
    .await;
    for h in handles {
        h.shutdown().await;
    }
    let ran = ran.lock().unwrap().clone();
    assert!(ran.len() >= 11);
    each_tick_once(&ran);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_run_each_berlin_tick_once_on_postgres() {
    let first = errand_postgres::testing::scratch_store().await;
    let second = common::other_process(&first, "errand-cron-2").await;
    let third = common::other_process(&first, "errand-cron-3").await;
    three_processes_run_each_berlin_tick_once([first, second, third]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_run_each_berlin_tick_once_on_sqlite() {
    let (first, dir) = sqlite().await;
    let path = dir.path().join("errand.db");
    let open = || errand::SqliteStore::open(path.to_str().unwrap());
    let (second, third) = (open().await.unwrap(), open().await.unwrap());
    three_processes_run_each_berlin_tick_once([first, second, third]).await;
}

on_every_store!(two_workers_run_each_tick_once);

async fn two_workers_run_each_tick_once<S: Store + Clone>(store: S) {
    let ran = Ran::default();
    let a = worker(store.clone(), &ran, "a");
    let b = worker(store.clone(), &ran, "b");
    wait_for("three ticks ran", Duration::from_secs(15), || async {
        ran.lock().unwrap().len() >= 3
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;

    let ran = ran.lock().unwrap().clone();
    each_tick_once(&ran);

    let rows = store
        .list(&ListFilter::new().state(JobState::Completed))
        .await
        .unwrap();
    assert_eq!(rows.len(), ran.len(), "one completed job per run: {rows:?}");
    for (tick, id) in &ran {
        let row = rows
            .iter()
            .find(|r| r.id == *id)
            .expect("ran job is stored");
        assert_eq!(row.run_at, *tick);
        assert_eq!(
            row.unique_key.as_deref(),
            Some(format!("cron:every-second:{}", tick.format("%Y-%m-%dT%H:%M:%SZ")).as_str())
        );
    }
    // The tick after the last one waits, enqueued once for both workers.
    let waiting = store
        .list(&ListFilter::new().state(JobState::Scheduled))
        .await
        .unwrap();
    assert!(waiting.len() <= 2, "{waiting:?}");
    let keys: std::collections::HashSet<_> = waiting.iter().map(|r| &r.unique_key).collect();
    assert_eq!(keys.len(), waiting.len(), "{waiting:?}");
}

#[tokio::test]
async fn bad_cron_entries_fail_the_build_and_say_why() {
    let store = errand::MemoryStore::new();
    let build = |f: fn(
        errand::WorkerBuilder<errand::MemoryStore, Ran>,
    ) -> errand::WorkerBuilder<errand::MemoryStore, Ran>| {
        f(Worker::builder(store.clone(), Ran::default())
            .register::<Tick>()
            .queue("default", 1))
        .build()
    };
    for (what, result, says) in [
        (
            "bad pattern",
            build(|b| b.cron("r", "every day", job())),
            "not a cron expression",
        ),
        (
            "never fires",
            build(|b| b.cron("r", "0 0 31 2 *", job())),
            "never fires",
        ),
        (
            "empty name",
            build(|b| b.cron("", "@daily", job())),
            "name is empty",
        ),
        (
            "two entries, one name",
            build(|b| b.cron("r", "@daily", job()).cron("r", "@hourly", job())),
            "two entries have this name",
        ),
        (
            "a delay in the options",
            build(|b| {
                b.cron_with(
                    "r",
                    "@daily",
                    job(),
                    JobOptions::new().delay(Duration::from_secs(1)),
                )
            }),
            "a run time (`run_at` or `delay`)",
        ),
        (
            "a unique key in the options",
            build(|b| b.cron_with("r", "@daily", job(), JobOptions::new().unique_key("k"))),
            "`unique_key`",
        ),
        (
            "an invalid queue",
            build(|b| b.cron_with("r", "@daily", job(), JobOptions::new().queue(""))),
            "queue",
        ),
    ] {
        match result {
            Err(WorkerError::InvalidCron { reason, .. }) => {
                assert!(reason.contains(says), "{what}: {reason}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    let good = build(|b| {
        b.cron("r", "@daily", job())
            .cron("s", "*/10 * * * * *", job())
    });
    assert!(good.is_ok(), "{good:?}");
    // An entry whose kind this worker does not run: refused unless allowed.
    let unregistered = || {
        Worker::builder(store.clone(), Ran::default())
            .register::<Other>()
            .queue("default", 1)
            .cron("r", "@daily", job())
    };
    match unregistered().build() {
        Err(WorkerError::InvalidCron { name, reason }) => {
            assert_eq!(name, "r");
            assert!(
                reason.contains("kind 'tick'") && reason.contains("allow_foreign_cron_kinds"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(unregistered().allow_foreign_cron_kinds().build().is_ok());
}
