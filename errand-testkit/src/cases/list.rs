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

/// Asserts `stats(states)`, as (queue, state, count) triples in any order.
async fn assert_stats<S: Store>(store: &S, states: &[JobState], want: &[(&str, JobState, u64)]) {
    let mut got: Vec<_> = store
        .stats(states)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.queue, s.state, s.count))
        .collect();
    got.sort();
    let mut want: Vec<_> = want
        .iter()
        .map(|(q, s, n)| (q.to_string(), *s, *n))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

/// Stats give non-zero counts per (queue, state).
pub async fn stats_count_by_queue_and_state<S: Store>(store: S) {
    seed(&store).await;
    assert_stats(
        &store,
        &[],
        &[
            ("a", JobState::Available, 1),
            ("a", JobState::Running, 1),
            ("b", JobState::Available, 2),
        ],
    )
    .await;
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

/// One job in every state on queue `q` (ids in state order: scheduled, available, running,
/// retryable, completed, discarded, cancelled), and one available job on queue `other`.
async fn one_per_state<S: Store>(store: &S) -> Vec<(JobState, errand_core::JobId)> {
    use errand_core::FinishAction;
    let mut later = job("noop", "q");
    later.run_at = at(3600);
    let scheduled = insert_one(store, later).await;
    let available = insert_one(store, job("noop", "q")).await;
    let ids = insert_n(store, "q", 5).await;
    insert_one(store, job("noop", "other")).await;
    // Claim the five (and not `available`, which is older: claim them by moving it aside).
    store.cancel(available, at(1)).await.unwrap();
    let rows = claim(store, "q", 5, at(1)).await;
    assert_eq!(rows.len(), 5);
    store.retry_now(available, at(1)).await.unwrap();
    let by_id = |id| rows.iter().find(|r| r.id == id).unwrap();
    let running = ids[0];
    let actions = [
        (
            ids[1],
            FinishAction::Retry {
                run_at: at(3600),
                error: error(by_id(ids[1]), at(2), "boom"),
            },
        ),
        (ids[2], FinishAction::Complete),
        (
            ids[3],
            FinishAction::Discard {
                error: error(by_id(ids[3]), at(2), "bad"),
            },
        ),
        (ids[4], FinishAction::Cancel { error: None }),
    ];
    let finishes: Vec<_> = actions
        .into_iter()
        .map(|(id, action)| finish(by_id(id), at(2), action))
        .collect();
    assert_eq!(store.finish(&finishes).await.unwrap().len(), 4);
    let want = vec![
        (JobState::Scheduled, scheduled),
        (JobState::Available, available),
        (JobState::Running, running),
        (JobState::Retryable, ids[1]),
        (JobState::Completed, ids[2]),
        (JobState::Discarded, ids[3]),
        (JobState::Cancelled, ids[4]),
    ];
    for (state, id) in &want {
        assert_eq!(get(store, *id).await.state, *state, "job {id}");
    }
    want
}

/// Filters naming states of several kinds at once (waiting, running, failed, done) list,
/// page, count and group exactly the jobs in those states, newest first.
pub async fn queries_across_many_states_are_exact<S: Store>(store: S) {
    let jobs = one_per_state(&store).await;
    let id_of = |s: JobState| jobs.iter().find(|(st, _)| *st == s).unwrap().1;
    let picked = [
        JobState::Retryable,
        JobState::Running,
        JobState::Discarded,
        JobState::Completed,
        JobState::Available,
    ];
    let mut want: Vec<_> = picked.iter().map(|s| id_of(*s)).collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    let mut filter = ListFilter::new().queue("q").limit(2);
    for s in picked {
        filter = filter.state(s);
    }
    let mut seen = Vec::new();
    loop {
        let page = store.list(&filter).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        filter = filter.before(last.id);
        seen.extend(page.iter().map(|r| r.id));
    }
    assert_eq!(seen, want, "pages newest first over every group asked");
    let all_picked = picked
        .iter()
        .fold(ListFilter::new().queue("q"), |f, s| f.state(*s));
    assert_eq!(store.count(&all_picked).await.unwrap(), 5);
    // A part of a group: retryable without scheduled, discarded without cancelled.
    assert_eq!(
        store
            .count(&ListFilter::new().state(JobState::Retryable))
            .await
            .unwrap(),
        1
    );
    let dead = store
        .list(&ListFilter::new().state(JobState::Discarded))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id_of(JobState::Discarded));
    // Other queues stay out; no state filter means every state.
    assert_eq!(store.count(&ListFilter::new().queue("q")).await.unwrap(), 7);
    assert_eq!(store.count(&ListFilter::new()).await.unwrap(), 8);
    let states = [
        JobState::Available,
        JobState::Scheduled,
        JobState::Cancelled,
    ];
    assert_stats(
        &store,
        &states,
        &[
            ("other", JobState::Available, 1),
            ("q", JobState::Scheduled, 1),
            ("q", JobState::Available, 1),
            ("q", JobState::Cancelled, 1),
        ],
    )
    .await;
}

/// A tag filter matches jobs carrying that tag among others, exactly (no prefix or
/// substring), and combines with the other filters.
pub async fn list_and_count_filter_by_tag<S: Store>(store: S) {
    let tagged = |kind: &str, tags: &[&str]| {
        let mut j = job(kind, "q");
        j.tags = tags.iter().map(|t| t.to_string()).collect();
        j
    };
    let ids: Vec<_> = store
        .insert(
            vec![
                tagged("a", &["vip", "eu"]),
                tagged("b", &["eu"]),
                tagged("a", &["vipper", "v\"ip"]),
                tagged("a", &[]),
            ],
            t0(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let vip = store.list(&ListFilter::new().tag("vip")).await.unwrap();
    assert_eq!(vip.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[0]]);
    let eu = ListFilter::new().tag("eu");
    assert_eq!(store.count(&eu).await.unwrap(), 2);
    assert_eq!(store.count(&eu.clone().kind("b")).await.unwrap(), 1);
    let quoted = store.list(&ListFilter::new().tag("v\"ip")).await.unwrap();
    assert_eq!(quoted.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[2]]);
    let none = ListFilter::new().tag("eu").state(JobState::Completed);
    assert_eq!(store.count(&none).await.unwrap(), 0);
}

/// `count_up_to` counts exactly up to its cap and says "more" with `cap + 1` beyond it,
/// for filters on one state group, several, and none.
pub async fn counts_up_to_a_cap_are_exact_below_it<S: Store>(store: S) {
    let ids = insert_n(&store, "a", 5).await;
    insert_n(&store, "b", 3).await;
    claim(&store, "a", 2, at(0)).await;
    store.cancel(ids[4], at(1)).await.unwrap();
    let count = |f: ListFilter, cap: u64| {
        let store = &store;
        async move { store.count_up_to(&f, cap).await.unwrap() }
    };
    assert_eq!(count(ListFilter::new(), 100).await, 8);
    assert_eq!(count(ListFilter::new(), 8).await, 8, "at the cap: exact");
    assert_eq!(
        count(ListFilter::new(), 7).await,
        8,
        "over the cap: cap + 1"
    );
    assert_eq!(count(ListFilter::new(), 0).await, 1);
    let a = ListFilter::new().queue("a");
    assert_eq!(count(a.clone(), 100).await, 5);
    assert_eq!(count(a.clone().state(JobState::Available), 100).await, 2);
    let two_groups = a.state(JobState::Running).state(JobState::Cancelled);
    assert_eq!(count(two_groups.clone(), 100).await, 3);
    assert_eq!(count(two_groups, 1).await, 2);
    assert_eq!(count(ListFilter::new().kind("none"), 5).await, 0);
    assert_eq!(count(ListFilter::new(), u64::MAX).await, 8, "no overflow");
}

/// `state_counts_up_to` gives one state's counts per queue, exact under the cap and
/// adding up to `cap + 1` over it.
pub async fn state_counts_up_to_a_cap<S: Store>(store: S) {
    insert_n(&store, "a", 4).await;
    insert_n(&store, "b", 2).await;
    claim(&store, "a", 1, at(0)).await;
    let counts = store
        .state_counts_up_to(JobState::Available, 100)
        .await
        .unwrap();
    let got: Vec<(&str, JobState, u64)> = counts
        .iter()
        .map(|c| (c.queue.as_str(), c.state, c.count))
        .collect();
    assert_eq!(
        got,
        vec![("a", JobState::Available, 3), ("b", JobState::Available, 2)]
    );
    let capped = store
        .state_counts_up_to(JobState::Available, 3)
        .await
        .unwrap();
    assert_eq!(
        capped.iter().map(|c| c.count).sum::<u64>(),
        4,
        "cap + 1 when more"
    );
    let running = store
        .state_counts_up_to(JobState::Running, 100)
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!((running[0].queue.as_str(), running[0].count), ("a", 1));
    assert!(store
        .state_counts_up_to(JobState::Discarded, 100)
        .await
        .unwrap()
        .is_empty());
}

/// Oldest first: ascending ids, paged with `after`, across state groups too.
pub async fn list_pages_oldest_first<S: Store>(store: S) {
    let ids = insert_n(&store, "q", 5).await;
    // Two groups (available, running): the merge keeps ascending order.
    claim(&store, "q", 2, at(0)).await;
    let page = |f: ListFilter| {
        let store = &store;
        async move {
            store
                .list(&f)
                .await
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    let first = ListFilter::new().oldest_first().limit(2);
    assert_eq!(page(first.clone()).await, vec![ids[0], ids[1]]);
    assert_eq!(
        page(first.clone().after(ids[1])).await,
        vec![ids[2], ids[3]]
    );
    assert_eq!(page(first.clone().after(ids[3])).await, vec![ids[4]]);
    assert!(page(first.after(ids[4])).await.is_empty());
    let both = ListFilter::new()
        .state(errand_core::JobState::Available)
        .state(errand_core::JobState::Running)
        .oldest_first()
        .limit(3);
    assert_eq!(page(both.clone()).await, vec![ids[0], ids[1], ids[2]]);
    assert_eq!(page(both.after(ids[2])).await, vec![ids[3], ids[4]]);
    // Both bounds at once.
    let window = ListFilter::new().after(ids[0]).before(ids[4]);
    assert_eq!(page(window.clone()).await, vec![ids[3], ids[2], ids[1]]);
    assert_eq!(
        page(window.oldest_first()).await,
        vec![ids[1], ids[2], ids[3]]
    );
}
