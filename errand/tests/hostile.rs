//! Regression tests for the defects hostile testing found (issue 12): each fails on the code
//! before its fix. Sections follow the numbering.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use errand::{Client, Job, JobContext, JobError, JobState, Outcome, Store, WorkerError};
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
