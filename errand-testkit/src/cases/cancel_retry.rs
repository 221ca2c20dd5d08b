//! Operator actions: cancel and retry by hand.

use errand_core::{CancelResult, DeleteResult, FinishAction, JobState, Store};

use crate::helpers::*;

/// Cancelling a waiting job makes it final.
pub async fn cancel_available_job<S: Store>(store: S) {
    let id = insert_one(&store, job("a", "q")).await;
    match store.cancel(id, at(1)).await.unwrap() {
        CancelResult::Cancelled(row) => {
            assert_eq!(row.state, JobState::Cancelled);
            assert_eq!(row.finalized_at, Some(at(1)));
        }
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert!(claim(&store, "q", 1, at(2)).await.is_empty());
}

/// Cancelling a running job: its lease is gone and its outcome is ignored.
pub async fn cancel_running_job_fences_its_outcome<S: Store>(store: S) {
    insert_one(&store, job("a", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    assert!(matches!(
        store.cancel(r.id, at(2)).await.unwrap(),
        CancelResult::Cancelled(_)
    ));
    assert!(store
        .extend_leases(&[r.lease_ref()], at(60))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .finish(&[finish(&r, at(3), FinishAction::Complete)])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(get(&store, r.id).await.state, JobState::Cancelled);
}

/// A final job is reported as such and left unchanged.
pub async fn cancel_final_job_is_already_final<S: Store>(store: S) {
    insert_one(&store, job("a", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    store
        .finish(&[finish(&r, at(2), FinishAction::Complete)])
        .await
        .unwrap();
    match store.cancel(r.id, at(3)).await.unwrap() {
        CancelResult::AlreadyFinal(row) => assert_eq!(row.state, JobState::Completed),
        other => panic!("expected AlreadyFinal, got {other:?}"),
    }
}

/// Cancelling an id that does not exist says so.
pub async fn cancel_missing_job_is_not_found<S: Store>(store: S) {
    assert_eq!(
        store.cancel(987_654, at(1)).await.unwrap(),
        CancelResult::NotFound
    );
}

/// Retrying a discarded job makes it available with one more attempt allowed.
pub async fn retry_discarded_job_grants_an_attempt<S: Store>(store: S) {
    let mut j = job("a", "q");
    j.max_attempts = 1;
    insert_one(&store, j).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    store
        .finish(&[finish(
            &r,
            at(2),
            FinishAction::Discard {
                error: error(&r, at(2), "bad"),
            },
        )])
        .await
        .unwrap();
    let row = store.retry_now(r.id, at(3)).await.unwrap().expect("exists");
    assert_eq!(row.state, JobState::Available);
    assert_eq!(row.max_attempts, 2);
    assert_eq!(row.finalized_at, None);
    assert_eq!(row.errors.len(), 1, "history is kept");
    let again = claim(&store, "q", 1, at(4)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
}

/// Retrying a running job changes nothing.
pub async fn retry_running_job_leaves_it_alone<S: Store>(store: S) {
    insert_one(&store, job("a", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    let row = store.retry_now(r.id, at(2)).await.unwrap().expect("exists");
    assert_eq!(row.state, JobState::Running);
    assert_eq!(row.attempt, 1);
}

/// Retrying an id that does not exist gives `None`.
pub async fn retry_missing_job_is_none<S: Store>(store: S) {
    assert!(store.retry_now(987_654, at(1)).await.unwrap().is_none());
}

/// Deleting removes a waiting or final job for good and frees its unique key; a running job
/// is left alone (cancel it first); a missing id says so.
pub async fn delete_removes_a_job_but_not_a_running_one<S: Store>(store: S) {
    let mut keyed = job("a", "q");
    keyed.unique_key = Some("k".into());
    let waiting = insert_one(&store, keyed.clone()).await;
    let running = insert_one(&store, job("b", "r")).await;
    let r = claim(&store, "r", 1, at(1)).await.remove(0);
    assert_eq!(r.id, running);
    match store.delete(waiting).await.unwrap() {
        DeleteResult::Deleted(row) => {
            assert_eq!((row.id, row.state), (waiting, JobState::Available))
        }
        other => panic!("expected Deleted, got {other:?}"),
    }
    assert!(store.get(waiting).await.unwrap().is_none());
    assert!(
        claim(&store, "q", 10, at(2)).await.is_empty(),
        "not claimable"
    );
    // Its key is free: the same key inserts a new job.
    let again = store.insert(vec![keyed], at(3)).await.unwrap().remove(0);
    assert!(again.inserted && again.id != waiting);
    match store.delete(running).await.unwrap() {
        DeleteResult::Running(row) => assert_eq!(row.state, JobState::Running),
        other => panic!("expected Running, got {other:?}"),
    }
    assert_eq!(get(&store, running).await.state, JobState::Running);
    // Once final it can go.
    store
        .finish(&[finish(&r, at(4), FinishAction::Complete)])
        .await
        .unwrap();
    assert!(matches!(
        store.delete(running).await.unwrap(),
        DeleteResult::Deleted(_)
    ));
    assert_eq!(store.delete(running).await.unwrap(), DeleteResult::NotFound);
}
