//! Claiming: what a claim takes, in which order, and what it sets.

use errand_core::{FinishAction, JobId, JobState, Store};

use crate::helpers::*;

/// A claim sets running, attempt + 1, attempted_at/by and the lease.
pub async fn claim_sets_running_attempt_and_lease<S: Store>(store: S) {
    let id = insert_one(&store, job("a", "q")).await;
    let rows = claim(&store, "q", 10, at(5)).await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.id, id);
    assert_eq!(r.state, JobState::Running);
    assert_eq!(r.attempt, 1);
    assert_eq!(r.attempted_at, Some(at(5)));
    assert_eq!(r.attempted_by.as_deref(), Some("w1"));
    assert_eq!(r.lease_expires_at, Some(at(35)));
    assert_eq!(
        get(&store, id).await,
        *r,
        "returned row must match the stored row"
    );
}

/// A claimed row carries every field exactly as stored: escapes and non-ASCII text in the
/// payload, tags, unique key, backoff, timeout, and the error history of earlier attempts.
pub async fn claim_returns_every_field_exactly<S: Store>(store: S) {
    let mut j = job("odd \"kind\"", "q");
    j.args = r#"{"s": "é \" \\ \n 😀 \u00e9", "n": [1, -2, 3.5], "deep": {"a": [{}]}}"#.into();
    j.priority = -3;
    j.max_attempts = 7;
    j.tags = vec!["a".into(), "b \"c\"".into()];
    j.unique_key = Some("key \"1\"".into());
    j.backoff = Some(errand_core::Backoff::Constant {
        delay_ms: 5,
        jitter: 0.25,
    });
    j.timeout_ms = Some(1234);
    let id = insert_one(&store, j.clone()).await;
    let first = claim(&store, "q", 10, at(1)).await.remove(0);
    assert_eq!(
        first,
        get(&store, id).await,
        "first claim matches the stored row"
    );
    assert_eq!(json(&first.args), json(&j.args));
    assert_eq!(
        (first.kind.as_str(), first.priority, first.max_attempts),
        ("odd \"kind\"", -3, 7)
    );
    assert_eq!(
        (
            &first.tags,
            &first.unique_key,
            &first.backoff,
            first.timeout_ms
        ),
        (&j.tags, &j.unique_key, &j.backoff, j.timeout_ms)
    );
    let failure = error(&first, at(2), "boom \"quoted\" ✗");
    store
        .finish(&[finish(
            &first,
            at(2),
            FinishAction::Retry {
                run_at: at(2),
                error: failure.clone(),
            },
        )])
        .await
        .unwrap();
    let second = claim(&store, "q", 10, at(3)).await.remove(0);
    assert_eq!(
        second,
        get(&store, id).await,
        "second claim matches the stored row"
    );
    assert_eq!(second.attempt, 2);
    assert_eq!(second.errors, vec![failure]);
}

/// Lower priority first, then earlier run_at, then lower id.
pub async fn claim_orders_by_priority_run_at_id<S: Store>(store: S) {
    let mut late = job("late", "q");
    late.run_at = at(-10);
    let mut early = job("early", "q");
    early.run_at = at(-20);
    let mut urgent = job("urgent", "q");
    urgent.priority = -1;
    let mut low = job("low", "q");
    low.priority = 5;
    low.run_at = at(-100);
    let plain = job("plain", "q");
    store
        .insert(vec![low, plain, late, early, urgent], t0())
        .await
        .unwrap();
    let kinds: Vec<String> = claim(&store, "q", 10, at(1))
        .await
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, ["urgent", "early", "late", "plain", "low"]);
}

/// No more than `limit` jobs per claim; the rest stay available.
pub async fn claim_respects_limit<S: Store>(store: S) {
    insert_n(&store, "q", 5).await;
    assert_eq!(claim(&store, "q", 2, at(1)).await.len(), 2);
    assert_eq!(claim(&store, "q", 2, at(1)).await.len(), 2);
    assert_eq!(claim(&store, "q", 2, at(1)).await.len(), 1);
    assert_eq!(claim(&store, "q", 2, at(1)).await.len(), 0);
}

/// Claims larger than what a store writes in one go (SQLite claims 32 in place and the rest
/// on its connection's thread) take exactly what they may: `limit` of a longer queue and all
/// of a shorter one, in claim order; under a fleet-wide limit, no more than it leaves beyond
/// what the worker holds.
pub async fn large_claims_take_exactly_what_they_may<S: Store>(store: S) {
    insert_n(&store, "q", 100).await;
    let first = claim(&store, "q", 70, at(1)).await;
    assert_eq!(first.len(), 70);
    let ids: Vec<JobId> = first.iter().map(|r| r.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "claim order: {ids:?}");
    let rest = claim(&store, "q", 70, at(1)).await;
    assert_eq!(rest.len(), 30, "what was left");
    assert!(rest.iter().all(|r| r.id > ids[69]));
    assert!(claim(&store, "q", 70, at(1)).await.is_empty());

    insert_n(&store, "l", 100).await;
    store
        .set_queue_limits("l", &running_limit(Some(50)), at(2))
        .await
        .unwrap();
    let mut req = claim_req("l", 100, at(3));
    req.held = Some(5);
    let got = store.claim(&req).await.unwrap();
    assert_eq!(
        got.len(),
        45,
        "50 at once, 5 of them held by this worker already"
    );
    req.held = Some(50);
    assert!(
        store.claim(&req).await.unwrap().is_empty(),
        "the limit is reached"
    );
}

/// A claim never takes another queue's jobs.
pub async fn claim_only_takes_its_queue<S: Store>(store: S) {
    insert_n(&store, "mail", 2).await;
    insert_n(&store, "reports", 3).await;
    let rows = claim(&store, "mail", 10, at(1)).await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.queue == "mail"));
}

/// Scheduled, retryable, running and final jobs are not claimed.
pub async fn claim_skips_jobs_that_are_not_available<S: Store>(store: S) {
    let mut sched = job("s", "q");
    sched.run_at = at(100);
    insert_one(&store, sched).await;
    insert_n(&store, "q", 1).await;
    let first = claim(&store, "q", 10, at(1)).await;
    assert_eq!(first.len(), 1, "only the available job");
    assert!(
        claim(&store, "q", 10, at(2)).await.is_empty(),
        "running job claimed twice"
    );
}

/// An empty or unknown queue gives an empty batch.
pub async fn claim_on_empty_queue_returns_nothing<S: Store>(store: S) {
    assert!(claim(&store, "nothing-here", 10, at(1)).await.is_empty());
}
