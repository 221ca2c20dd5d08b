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
    let pruned = store.prune(at(50), 1000).await.unwrap();
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
    assert_eq!(store.prune(at(10), 3).await.unwrap(), 3);
    assert_eq!(store.prune(at(10), 3).await.unwrap(), 2);
    assert_eq!(store.count(&ListFilter::new()).await.unwrap(), 0);
}
