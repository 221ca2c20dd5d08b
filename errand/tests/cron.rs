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
    Worker::builder(store, ran.clone())
        .register::<Tick>()
        .queue("default", 2)
        .cron("every-second", "* * * * * *", job())
        .worker_id(id)
        .schedule_interval(Duration::from_millis(20))
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
        .start()
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
    let mut ticks: Vec<DateTime<Utc>> = ran.iter().map(|(t, _)| *t).collect();
    ticks.sort();
    for pair in ticks.windows(2) {
        // Distinct (no tick ran twice) and consecutive (none skipped while workers ran).
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(1), "{ticks:?}");
    }
    assert!(ticks.iter().all(|t| t.nanosecond() == 0), "{ticks:?}");

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
