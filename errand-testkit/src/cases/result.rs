//! What a job leaves for others to read: its result, its progress, and the wake-up of
//! whoever waits for it to end.

use errand_core::{FinishAction, JobState, LeaseRef, Progress, Store};

use crate::helpers::*;

fn completed_with(result: &str) -> FinishAction {
    FinishAction::CompleteWith {
        result: result.to_owned(),
    }
}

/// A completion with a result stores it exactly, beside plain completions of the same
/// batch; a stale attempt's result is not written.
pub async fn a_completion_stores_its_result<S: Store>(store: S) {
    insert_n(&store, "q", 3).await;
    let rows = claim(&store, "q", 3, at(1)).await;
    let result = r#"{"url":"https://x.example/a b","sizes":[1,2.5,-3],"note":"naïve \"quoted\""}"#;
    let applied = store
        .finish(&[
            finish(&rows[0], at(2), FinishAction::Complete),
            finish(&rows[1], at(2), completed_with(result)),
            finish(&rows[2], at(2), FinishAction::Complete),
        ])
        .await
        .unwrap();
    assert_eq!(applied.len(), 3);
    let with = get(&store, rows[1].id).await;
    assert_eq!(with.state, JobState::Completed);
    assert_eq!(
        json(with.result.as_deref().expect("result stored")),
        json(result)
    );
    for plain in [&rows[0], &rows[2]] {
        assert_eq!(get(&store, plain.id).await.result, None);
    }

    // A stale attempt (the job was cancelled meanwhile) writes nothing.
    let id = insert_one(&store, job("b", "q")).await;
    let r = claim(&store, "q", 1, at(3)).await.remove(0);
    assert_eq!(r.id, id);
    store.cancel(id, at(4)).await.unwrap();
    let applied = store
        .finish(&[finish(&r, at(5), completed_with("42"))])
        .await
        .unwrap();
    assert!(applied.is_empty());
    let row = get(&store, id).await;
    assert_eq!((row.state, row.result), (JobState::Cancelled, None));
}

/// Progress is stored for the attempt that holds the job only, kept after it ends, and
/// replaced by a later report.
pub async fn progress_is_fenced_and_kept<S: Store>(store: S) {
    let id = insert_one(&store, job("a", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    let first = Progress::new(1, at(2), 10.0, "fetching");
    assert!(store.set_progress(r.lease_ref(), &first).await.unwrap());
    assert_eq!(get(&store, id).await.progress, Some(first.clone()));
    let later = Progress::new(1, at(3), 55.5, "parsing 3 of 7");
    assert!(store.set_progress(r.lease_ref(), &later).await.unwrap());
    let stale = LeaseRef {
        id,
        attempt: r.attempt + 1,
    };
    let wrong = Progress::new(2, at(3), 99.0, "from another attempt");
    assert!(!store.set_progress(stale, &wrong).await.unwrap());
    assert_eq!(get(&store, id).await.progress, Some(later.clone()));
    store
        .finish(&[finish(&r, at(4), FinishAction::Complete)])
        .await
        .unwrap();
    let row = get(&store, id).await;
    assert_eq!(row.progress, Some(later));
    // After the end, nobody holds the job: a report is refused.
    assert!(!store.set_progress(r.lease_ref(), &first).await.unwrap());
    let missing = LeaseRef {
        id: id + 1000,
        attempt: 1,
    };
    assert!(!store.set_progress(missing, &first).await.unwrap());
}

/// Retrying a completed job by hand clears what its last run left (result, progress).
pub async fn retry_now_clears_result_and_progress<S: Store>(store: S) {
    let id = insert_one(&store, job("a", "q")).await;
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    let p = Progress::new(1, at(2), 100.0, "done");
    assert!(store.set_progress(r.lease_ref(), &p).await.unwrap());
    store
        .finish(&[finish(&r, at(3), completed_with(r#"{"n":1}"#))])
        .await
        .unwrap();
    assert!(get(&store, id).await.result.is_some());
    let again = store.retry_now(id, at(4)).await.unwrap().unwrap();
    assert_eq!(again.state, JobState::Available);
    assert_eq!((again.result, again.progress), (None, None));
}

/// Every way a job ends wakes `signals().ended()` in this process: an outcome, an
/// operator's cancel, a rescue out of attempts.
pub async fn ends_wake_whoever_waits<S: Store>(store: S) {
    let mut ended = store.signals().ended();
    ended.borrow_and_update();
    let id = insert_one(&store, job("a", "q")).await;
    assert!(!ended.has_changed().unwrap(), "an insert is not an end");
    let r = claim(&store, "q", 1, at(1)).await.remove(0);
    store
        .finish(&[finish(&r, at(2), completed_with("1"))])
        .await
        .unwrap();
    assert!(ended.has_changed().unwrap(), "completion of job {id}");
    ended.borrow_and_update();

    let retried = insert_one(&store, job("b", "q")).await;
    let r = claim(&store, "q", 1, at(3)).await.remove(0);
    assert_eq!(r.id, retried);
    store
        .finish(&[finish(
            &r,
            at(4),
            FinishAction::Retry {
                run_at: at(100),
                error: error(&r, at(4), "later"),
            },
        )])
        .await
        .unwrap();
    assert!(!ended.has_changed().unwrap(), "a retry is not an end");
    store.cancel(retried, at(5)).await.unwrap();
    assert!(ended.has_changed().unwrap(), "an operator's cancel");
    ended.borrow_and_update();

    let mut one_try = job("c", "q");
    one_try.max_attempts = 1;
    insert_one(&store, one_try).await;
    claim(&store, "q", 1, at(6)).await;
    let report = store.rescue_expired(at(6 + 3600), 10).await.unwrap();
    assert_eq!(report.discarded, 1);
    assert!(ended.has_changed().unwrap(), "a rescue that discards");
}
