//! A worker's poll on SQLite reports what other processes changed: a queue record (so a
//! pause reaches the worker without its watcher polling the records) and a job come due (so
//! the scheduler need not poll every second). Two stores on one file stand for two
//! processes: they share nothing in memory.

use std::time::Duration;

use chrono::Utc;
use errand_core::{NewJob, Store};
use errand_sqlite::SqliteStore;

async fn two_processes() -> (SqliteStore, SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("errand.db").display());
    let a = SqliteStore::open(&url).await.unwrap();
    let b = SqliteStore::open(&url).await.unwrap();
    (a, b, dir)
}

#[tokio::test]
async fn a_record_changed_elsewhere_wakes_the_watcher_at_the_next_poll() {
    let (a, b, _dir) = two_processes().await;
    assert!(a.poll_reports_changes());
    let q = vec!["q".to_owned()];
    let mut controls = a.signals().controls();
    // The first poll has nothing to compare with: it wakes the watcher once (a change may
    // have come between the watcher's first read and this poll).
    a.queues_with_available(&q).await.unwrap();
    assert!(
        controls.has_changed().unwrap(),
        "the first poll wakes the watcher"
    );
    controls.borrow_and_update();
    a.queues_with_available(&q).await.unwrap();
    assert!(!controls.has_changed().unwrap(), "nothing changed since");
    b.set_queue_paused("q", true, Utc::now()).await.unwrap();
    a.queues_with_available(&q).await.unwrap();
    assert!(controls.has_changed().unwrap(), "the pause was reported");
    controls.borrow_and_update();
    // Resumed: the count of records is the same, their change time moved.
    b.set_queue_paused("q", false, Utc::now()).await.unwrap();
    // Every queue of the worker may be paused: the poll asks about none and still reports.
    a.queues_with_available(&[]).await.unwrap();
    assert!(controls.has_changed().unwrap(), "the resume was reported");
}

#[tokio::test]
async fn a_job_come_due_elsewhere_wakes_the_scheduler_at_the_next_poll() {
    let (a, b, _dir) = two_processes().await;
    let wake = a.signals().scheduled();
    let soon = Utc::now() + chrono::TimeDelta::milliseconds(200);
    let job = NewJob {
        kind: "k".into(),
        queue: "q".into(),
        args: "{}".into(),
        priority: 0,
        max_attempts: 1,
        run_at: soon,
        tags: vec![],
        unique_key: None,
        unique_states: Default::default(),
        unique_for_ms: None,
        backoff: None,
        timeout_ms: None,
        partition_key: None,
    };
    b.insert(vec![job], Utc::now()).await.unwrap();
    let q = vec!["q".to_owned()];
    // Not due yet: the poll wakes no one.
    let notified = wake.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    a.queues_with_available(&q).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(1), notified.as_mut())
            .await
            .is_err(),
        "woken before the job was due"
    );
    // Due: the next poll wakes the scheduler.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while Utc::now() < soon {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.queues_with_available(&q).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), notified)
        .await
        .expect("the poll woke the scheduler");
}
