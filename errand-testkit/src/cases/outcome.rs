//! Recording outcomes: each action's resulting state, and fencing by attempt.

use errand_core::{FinishAction, JobState, Store};

use crate::helpers::*;

/// Complete: final, finalized_at set, lease cleared.
pub async fn complete_is_final<S: Store>(store: S) {
    insert_one(&store, job("a", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    let applied = store
        .finish(&[finish(&r, at(2), FinishAction::Complete)])
        .await
        .unwrap();
    assert_eq!(applied, vec![r.id]);
    let row = get(&store, r.id).await;
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.finalized_at, Some(at(2)));
    assert_eq!(row.lease_expires_at, None);
    assert_eq!(row.attempt, 1);
}

/// Retry later: retryable until run_at, error appended.
pub async fn retry_later_is_retryable_with_error<S: Store>(store: S) {
    insert_one(&store, job("a", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    let err = error(&r, at(2), "boom: connection refused");
    store
        .finish(&[finish(
            &r,
            at(2),
            FinishAction::Retry {
                run_at: at(60),
                error: err.clone(),
            },
        )])
        .await
        .unwrap();
    let row = get(&store, r.id).await;
    assert_eq!(row.state, JobState::Retryable);
    assert_eq!(row.run_at, at(60));
    assert_eq!(row.errors, vec![err]);
    assert_eq!(row.finalized_at, None);
    assert!(claim(&store, "q", 1, at(3)).await.is_empty());
}

/// Retry with run_at not after the finish time: available at once.
pub async fn retry_now_outcome_is_available<S: Store>(store: S) {
    insert_one(&store, job("a", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    store
        .finish(&[finish(
            &r,
            at(2),
            FinishAction::Retry {
                run_at: at(2),
                error: error(&r, at(2), "again"),
            },
        )])
        .await
        .unwrap();
    assert_eq!(get(&store, r.id).await.state, JobState::Available);
    let again = claim(&store, "q", 1, at(3)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
}

/// Whether `n` fires within a moment (a wake-up stored while nobody waited counts).
async fn fired(n: &tokio::sync::Notify) -> bool {
    tokio::time::timeout(std::time::Duration::from_millis(200), n.notified())
        .await
        .is_ok()
}

/// Finishing fires the wake-ups it causes: the queue of a job made available at once, and
/// the scheduler for a job due later (no wake-up for a completion).
pub async fn finish_wakes_the_queue_and_the_scheduler<S: Store>(store: S) {
    let queue = store.signals().get("q");
    let scheduler = store.signals().scheduled();
    insert_one(&store, job("a", "q")).await;
    insert_one(&store, job("b", "q")).await;
    insert_one(&store, job("c", "q")).await;
    let rows = claim(&store, "q", 3, at(1)).await;
    // The inserts' own wake-ups, consumed.
    while fired(&queue).await {}
    while fired(&scheduler).await {}
    store
        .finish(&[finish(&rows[0], at(2), FinishAction::Complete)])
        .await
        .unwrap();
    assert!(!fired(&queue).await, "a completion makes nothing due");
    store
        .finish(&[finish(
            &rows[1],
            at(2),
            FinishAction::Retry {
                run_at: at(2),
                error: error(&rows[1], at(2), "again"),
            },
        )])
        .await
        .unwrap();
    assert!(fired(&queue).await, "a retry due at once wakes its queue");
    store
        .finish(&[finish(
            &rows[2],
            at(2),
            FinishAction::Snooze { run_at: at(90) },
        )])
        .await
        .unwrap();
    assert!(
        fired(&scheduler).await,
        "a job due later wakes the scheduler"
    );
}

/// Snooze: scheduled at run_at, the attempt given back.
pub async fn snooze_reschedules_without_using_an_attempt<S: Store>(store: S) {
    insert_one(&store, job("a", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    store
        .finish(&[finish(&r, at(2), FinishAction::Snooze { run_at: at(30) })])
        .await
        .unwrap();
    let row = get(&store, r.id).await;
    assert_eq!(row.state, JobState::Scheduled);
    assert_eq!(row.run_at, at(30));
    assert_eq!(row.attempt, 0);
    assert!(row.errors.is_empty());
}

/// Cancel outcome: final, reason recorded.
pub async fn cancel_outcome_is_final<S: Store>(store: S) {
    insert_one(&store, job("a", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    let err = error(&r, at(2), "customer deleted");
    store
        .finish(&[finish(
            &r,
            at(2),
            FinishAction::Cancel {
                error: Some(err.clone()),
            },
        )])
        .await
        .unwrap();
    let row = get(&store, r.id).await;
    assert_eq!(row.state, JobState::Cancelled);
    assert_eq!(row.finalized_at, Some(at(2)));
    assert_eq!(row.errors, vec![err]);
}

/// Discard: final, error recorded, payload intact for a retry by hand.
pub async fn discard_keeps_error_and_payload<S: Store>(store: S) {
    let mut j = job("a", "q");
    j.args = r#"{"shape":"wrong"}"#.into();
    insert_one(&store, j).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    let err = error(&r, at(2), "invalid payload: missing field `to`");
    store
        .finish(&[finish(
            &r,
            at(2),
            FinishAction::Discard { error: err.clone() },
        )])
        .await
        .unwrap();
    let row = get(&store, r.id).await;
    assert_eq!(row.state, JobState::Discarded);
    assert_eq!(row.errors, vec![err]);
    assert_eq!(json(&row.args), json(r#"{"shape":"wrong"}"#));
}

/// An outcome for an attempt that no longer holds the job changes nothing.
pub async fn outcome_of_a_stale_attempt_is_ignored<S: Store>(store: S) {
    insert_one(&store, job("a", "q")).await;
    let first = claim(&store, "q", 1, at(1)).await.remove(0);
    // The first worker's lease expires and the job is retried by a second worker.
    store.rescue_expired(at(100), 100).await.unwrap();
    store.promote_due(at(100), 100).await.unwrap();
    let second = claim(&store, "q", 1, at(101)).await.remove(0);
    assert_eq!(second.attempt, 2);
    let applied = store
        .finish(&[finish(&first, at(102), FinishAction::Complete)])
        .await
        .unwrap();
    assert!(applied.is_empty(), "stale attempt must not be applied");
    let row = get(&store, first.id).await;
    assert_eq!(row.state, JobState::Running);
    assert_eq!(row.attempt, 2);
    let applied = store
        .finish(&[finish(&second, at(103), FinishAction::Complete)])
        .await
        .unwrap();
    assert_eq!(applied, vec![second.id]);
}

/// A batch applies each live attempt and reports exactly those.
pub async fn outcome_batch_reports_applied_ids<S: Store>(store: S) {
    insert_n(&store, "q", 3).await;
    let rows = claim(&store, "q", 3, at(1)).await;
    let mut stale = rows[2].clone();
    stale.attempt = 9;
    let applied = store
        .finish(&[
            finish(&rows[0], at(2), FinishAction::Complete),
            finish(
                &rows[1],
                at(2),
                FinishAction::Discard {
                    error: error(&rows[1], at(2), "x"),
                },
            ),
            finish(&stale, at(2), FinishAction::Complete),
        ])
        .await
        .unwrap();
    let mut applied = applied;
    applied.sort();
    assert_eq!(applied, vec![rows[0].id, rows[1].id]);
    assert_eq!(get(&store, rows[2].id).await.state, JobState::Running);
}

/// A batch of thousands of completions, one of them stale, applies all the others (stores
/// that split big batches into several statements still answer for the whole batch).
pub async fn large_completion_batch_is_exact<S: Store>(store: S) {
    let n = 9_000;
    insert_n(&store, "q", n).await;
    let rows = claim(&store, "q", n as u32, at(1)).await;
    assert_eq!(rows.len(), n);
    let mut finishes: Vec<_> = rows
        .iter()
        .map(|r| finish(r, at(2), FinishAction::Complete))
        .collect();
    finishes[n - 10].lease.attempt += 1; // an attempt this job never had
    let mut applied = store.finish(&finishes).await.unwrap();
    applied.sort_unstable();
    let mut want: Vec<_> = rows.iter().map(|r| r.id).collect();
    let stale = want.remove(n - 10);
    want.sort_unstable();
    assert_eq!(applied, want);
    assert_eq!(get(&store, stale).await.state, JobState::Running);
    let done = store
        .count(&errand_core::ListFilter::new().state(JobState::Completed))
        .await
        .unwrap();
    assert_eq!(done, n as u64 - 1);
}

/// Each failed attempt appends one record, oldest first.
pub async fn error_history_accumulates_in_order<S: Store>(store: S) {
    insert_one(&store, job("a", "q")).await;
    for (i, msg) in ["first", "second"].into_iter().enumerate() {
        let now = at(10 * i as i64 + 1);
        let r = claim(&store, "q", 1, now).await.remove(0);
        store
            .finish(&[finish(
                &r,
                now,
                FinishAction::Retry {
                    run_at: now,
                    error: error(&r, now, msg),
                },
            )])
            .await
            .unwrap();
    }
    let rows = store.list(&Default::default()).await.unwrap();
    let errors = &rows[0].errors;
    assert_eq!(errors.len(), 2);
    assert_eq!(
        (errors[0].attempt, errors[0].message.as_str()),
        (1, "first")
    );
    assert_eq!(
        (errors[1].attempt, errors[1].message.as_str()),
        (2, "second")
    );
}
