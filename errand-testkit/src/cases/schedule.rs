//! Promotion of due scheduled and retryable jobs.

use std::time::Duration;

use errand_core::{FinishAction, JobState, Store};

use crate::helpers::*;

/// Due scheduled and retryable jobs become available.
pub async fn promote_moves_due_scheduled_and_retryable<S: Store>(store: S) {
    let mut s = job("s", "q");
    s.run_at = at(10);
    let sid = insert_one(&store, s).await;
    let rid = insert_one(&store, job("r", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    assert_eq!(r.id, rid);
    store
        .finish(&[finish(
            &r,
            at(2),
            FinishAction::Retry {
                run_at: at(8),
                error: error(&r, at(2), "x"),
            },
        )])
        .await
        .unwrap();
    let report = store.promote_due(at(10), 100).await.unwrap();
    assert_eq!(report.promoted, 2);
    assert_eq!(get(&store, sid).await.state, JobState::Available);
    assert_eq!(get(&store, rid).await.state, JobState::Available);
}

/// The report names each queue once, and those queues are woken.
pub async fn promote_reports_queues_and_wakes_them<S: Store>(store: S) {
    for q in ["a", "a", "b"] {
        let mut j = job("k", q);
        j.run_at = at(5);
        insert_one(&store, j).await;
    }
    let signal = store.signals().get("b");
    let waiter = tokio::spawn(async move { signal.notified().await });
    tokio::task::yield_now().await;
    let mut report = store.promote_due(at(5), 100).await.unwrap();
    report.queues.sort();
    assert_eq!(report.promoted, 3);
    assert_eq!(report.queues, ["a", "b"]);
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("promotion did not wake queue b")
        .unwrap();
}

/// Jobs not yet due stay where they are.
pub async fn promote_leaves_future_jobs<S: Store>(store: S) {
    let mut j = job("k", "q");
    j.run_at = at(60);
    let id = insert_one(&store, j).await;
    assert_eq!(store.promote_due(at(59), 100).await.unwrap().promoted, 0);
    assert_eq!(get(&store, id).await.state, JobState::Scheduled);
}

/// At most `limit` jobs per call.
pub async fn promote_respects_limit<S: Store>(store: S) {
    let jobs = (0..5)
        .map(|_| {
            let mut j = job("k", "q");
            j.run_at = at(5);
            j
        })
        .collect();
    store.insert(jobs, t0()).await.unwrap();
    assert_eq!(store.promote_due(at(5), 3).await.unwrap().promoted, 3);
    assert_eq!(store.promote_due(at(5), 3).await.unwrap().promoted, 2);
}

/// The report says when the earliest remaining scheduled or retryable job is due.
pub async fn promote_reports_when_the_next_job_is_due<S: Store>(store: S) {
    assert_eq!(store.promote_due(at(0), 100).await.unwrap().next_due, None);
    for secs in [5, 30, 90] {
        let mut j = job("k", "q");
        j.run_at = at(secs);
        insert_one(&store, j).await;
    }
    let report = store.promote_due(at(10), 100).await.unwrap();
    assert_eq!(report.promoted, 1);
    assert_eq!(report.next_due, Some(at(30)));
    let report = store.promote_due(at(100), 1).await.unwrap();
    assert_eq!(report.promoted, 1);
    assert!(
        report.next_due.is_some_and(|t| t <= at(100)),
        "a pass that stopped at its limit reports more due now: {:?}",
        report.next_due
    );
    let report = store.promote_due(at(100), 100).await.unwrap();
    assert_eq!((report.promoted, report.next_due), (1, None));
}
