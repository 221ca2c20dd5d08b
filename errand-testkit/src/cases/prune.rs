//! Pruning finished jobs past their retention.

use errand_core::{FinishAction, JobState, ListFilter, Store};

use crate::helpers::*;

async fn complete_all<S: Store>(store: &S, queue: &str, at_: chrono::DateTime<chrono::Utc>) {
    let rows = claim(store, queue, 100, at_).await;
    let batch: Vec<_> = rows
        .iter()
        .map(|r| finish(r, at_, FinishAction::Complete))
        .collect();
    store.finish(&batch).await.unwrap();
}

/// Only final jobs finalized before the cut-off go; waiting and recent ones stay.
pub async fn prune_deletes_only_old_final_jobs<S: Store>(store: S) {
    insert_n(&store, "old", 2).await;
    complete_all(&store, "old", at(10)).await;
    insert_n(&store, "new", 1).await;
    complete_all(&store, "new", at(100)).await;
    insert_n(&store, "waiting", 1).await;
    let pruned = store
        .prune(JobState::Completed, at(50), 1000)
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    assert_eq!(
        store.count(&ListFilter::new().queue("old")).await.unwrap(),
        0
    );
    assert_eq!(
        store
            .count(&ListFilter::new().state(JobState::Completed))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .count(&ListFilter::new().state(JobState::Available))
            .await
            .unwrap(),
        1
    );
}

/// At most `limit` jobs per call.
pub async fn prune_respects_limit<S: Store>(store: S) {
    insert_n(&store, "q", 5).await;
    complete_all(&store, "q", at(1)).await;
    let prune = || store.prune(JobState::Completed, at(10), 3);
    assert_eq!(prune().await.unwrap(), 3);
    assert_eq!(prune().await.unwrap(), 2);
    assert_eq!(store.count(&ListFilter::new()).await.unwrap(), 0);
}

/// Each final state is pruned apart (its own retention): pruning one leaves the others, a
/// state that is not final prunes nothing, and the oldest go first.
pub async fn prune_takes_one_state_at_a_time<S: Store>(store: S) {
    insert_n(&store, "q", 6).await;
    let rows = claim(&store, "q", 6, at(1)).await;
    let action = |i: usize| match i % 3 {
        0 => FinishAction::Complete,
        1 => FinishAction::Cancel { error: None },
        _ => FinishAction::Discard {
            error: error(&rows[i], at(2), "gave up"),
        },
    };
    // Finalized at 10, 11, … so "oldest first" is observable.
    for (i, r) in rows.iter().enumerate() {
        store
            .finish(&[finish(r, at(10 + i as i64), action(i))])
            .await
            .unwrap();
    }
    assert_eq!(
        store.prune(JobState::Running, at(100), 10).await.unwrap(),
        0
    );
    assert_eq!(
        store.prune(JobState::Available, at(100), 10).await.unwrap(),
        0
    );
    // The older of the two discarded jobs goes first.
    assert_eq!(
        store.prune(JobState::Discarded, at(100), 1).await.unwrap(),
        1
    );
    let left: Vec<_> = store
        .list(&ListFilter::new().state(JobState::Discarded))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, [rows[5].id]);
    assert_eq!(
        store.prune(JobState::Cancelled, at(100), 10).await.unwrap(),
        2
    );
    assert_eq!(
        store.count(&ListFilter::new()).await.unwrap(),
        3,
        "completed and one discarded left"
    );
    assert_eq!(
        store
            .count(&ListFilter::new().state(JobState::Completed))
            .await
            .unwrap(),
        2
    );
}
