//! Listing, counting and stats for operators.

use errand_core::{JobState, ListFilter, Store};

use crate::helpers::*;

async fn seed<S: Store>(store: &S) {
    store
        .insert(
            vec![
                job("mail", "a"),
                job("mail", "b"),
                job("report", "a"),
                job("report", "b"),
            ],
            t0(),
        )
        .await
        .unwrap();
    claim(store, "a", 1, at(1)).await;
}

/// Filters combine: state, queue and kind.
pub async fn list_filters_by_state_queue_and_kind<S: Store>(store: S) {
    seed(&store).await;
    let running = store
        .list(&ListFilter::new().state(JobState::Running))
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(
        (running[0].queue.as_str(), running[0].kind.as_str()),
        ("a", "mail")
    );
    let b_reports = store
        .list(&ListFilter::new().queue("b").kind("report"))
        .await
        .unwrap();
    assert_eq!(b_reports.len(), 1);
    let avail_or_running = store
        .list(
            &ListFilter::new()
                .state(JobState::Available)
                .state(JobState::Running)
                .queue("a"),
        )
        .await
        .unwrap();
    assert_eq!(avail_or_running.len(), 2);
}

/// Pages are newest first and continue with `before`.
pub async fn list_pages_newest_first<S: Store>(store: S) {
    let ids = insert_n(&store, "q", 5).await;
    let page1 = store.list(&ListFilter::new().limit(2)).await.unwrap();
    let page1: Vec<_> = page1.iter().map(|r| r.id).collect();
    assert_eq!(page1, vec![ids[4], ids[3]]);
    let page2 = store
        .list(&ListFilter::new().limit(2).before(page1[1]))
        .await
        .unwrap();
    let page2: Vec<_> = page2.iter().map(|r| r.id).collect();
    assert_eq!(page2, vec![ids[2], ids[1]]);
}

/// Count applies the same filters as list, ignoring paging.
pub async fn count_matches_filters<S: Store>(store: S) {
    seed(&store).await;
    assert_eq!(store.count(&ListFilter::new()).await.unwrap(), 4);
    assert_eq!(store.count(&ListFilter::new().limit(1)).await.unwrap(), 4);
    assert_eq!(
        store
            .count(&ListFilter::new().state(JobState::Available))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store.count(&ListFilter::new().kind("mail")).await.unwrap(),
        2
    );
}

/// Stats give non-zero counts per (queue, state).
pub async fn stats_count_by_queue_and_state<S: Store>(store: S) {
    seed(&store).await;
    let mut stats: Vec<(String, JobState, u64)> = store
        .stats(&[])
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.queue, s.state, s.count))
        .collect();
    stats.sort();
    assert_eq!(
        stats,
        vec![
            ("a".to_owned(), JobState::Available, 1),
            ("a".to_owned(), JobState::Running, 1),
            ("b".to_owned(), JobState::Available, 2),
        ]
    );
}

/// Stats for chosen states leave the others out.
pub async fn stats_for_chosen_states<S: Store>(store: S) {
    seed(&store).await;
    let stats = store.stats(&[JobState::Running]).await.unwrap();
    assert_eq!(stats.len(), 1, "{stats:?}");
    assert_eq!(
        (stats[0].queue.as_str(), stats[0].state, stats[0].count),
        ("a", JobState::Running, 1)
    );
}
