//! Queues as stored objects: pause and resume.

use std::time::Duration;

use errand_core::{FinishAction, Store};

use crate::helpers::*;

/// A paused queue's claim takes nothing, other queues go on, and resuming lets it claim
/// again; the record says what was last done and when.
pub async fn a_paused_queue_claims_nothing_until_resumed<S: Store>(store: S) {
    insert_n(&store, "q", 3).await;
    insert_n(&store, "r", 2).await;
    assert!(
        store.queues().await.unwrap().is_empty(),
        "no record before use"
    );
    let rec = store.set_queue_paused("q", true, at(1)).await.unwrap();
    assert_eq!(
        (rec.name.as_str(), rec.paused, rec.updated_at),
        ("q", true, at(1))
    );
    assert!(claim(&store, "q", 10, at(2)).await.is_empty());
    assert_eq!(
        claim(&store, "r", 10, at(2)).await.len(),
        2,
        "other queues go on"
    );
    // Pausing twice is no error; the record keeps the latest time.
    store.set_queue_paused("q", true, at(3)).await.unwrap();
    assert!(claim(&store, "q", 10, at(4)).await.is_empty());
    store.set_queue_paused("q", false, at(5)).await.unwrap();
    assert_eq!(claim(&store, "q", 10, at(6)).await.len(), 3);
    let records = store.queues().await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!((records[0].paused, records[0].updated_at), (false, at(5)));
    // A name no enqueue would accept is refused, and nothing is recorded.
    for bad in ["", "a\nb", &"q".repeat(129)] {
        assert!(
            matches!(
                store.set_queue_paused(bad, true, at(7)).await,
                Err(errand_core::StoreError::InvalidQueue { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(store.queues().await.unwrap().len(), 1);
    // Names are data, not SQL.
    let odd = "it's; DROP TABLE jobs; --";
    store.set_queue_paused(odd, true, at(7)).await.unwrap();
    assert!(store
        .queues()
        .await
        .unwrap()
        .iter()
        .any(|r| r.name == odd && r.paused));
}

/// Pausing wakes the queue watchers in this process; resuming also wakes the queue's
/// producers, so claiming restarts at once rather than at the next poll.
pub async fn pause_and_resume_wake_who_must_act<S: Store>(store: S) {
    let mut controls = store.signals().controls();
    controls.borrow_and_update();
    let producer = store.signals().get("q");
    store.set_queue_paused("q", true, at(1)).await.unwrap();
    assert!(controls.has_changed().unwrap(), "watchers woken by a pause");
    controls.borrow_and_update();
    store.set_queue_paused("q", false, at(2)).await.unwrap();
    assert!(
        controls.has_changed().unwrap(),
        "watchers woken by a resume"
    );
    tokio::time::timeout(Duration::from_secs(5), producer.notified())
        .await
        .expect("the queue's producers woken by a resume");
}

/// A fleet-wide limit caps the running jobs of its queue: a claim takes at most the free
/// slots; slots come back as jobs end, are released or rescued; raising or removing the
/// limit lets more start. Pausing a limited queue keeps its limit.
pub async fn a_queue_limit_caps_running_jobs<S: Store>(store: S) {
    insert_n(&store, "q", 8).await;
    let rec = store
        .set_queue_limits("q", &running_limit(Some(2)), at(1))
        .await
        .unwrap();
    assert_eq!((rec.max_running, rec.paused), (Some(2), false));
    let first = claim(&store, "q", 10, at(2)).await;
    assert_eq!(first.len(), 2, "the free slots");
    assert!(
        claim(&store, "q", 10, at(2)).await.is_empty(),
        "no slot left"
    );
    // A job that ends gives its slot back.
    store
        .finish(&[finish(&first[0], at(3), FinishAction::Complete)])
        .await
        .unwrap();
    let second = claim(&store, "q", 10, at(4)).await;
    assert_eq!(second.len(), 1);
    // Released and rescued jobs give theirs back too.
    store
        .release(&[second[0].lease_ref()], at(5))
        .await
        .unwrap();
    assert_eq!(claim(&store, "q", 10, at(6)).await.len(), 1);
    store.rescue_expired(at(10_000), 100).await.unwrap();
    assert_eq!(claim(&store, "q", 10, at(10_001)).await.len(), 2);
    // Raised: more start; paused: none, the limit kept; removed: all that wait.
    store
        .set_queue_limits("q", &running_limit(Some(3)), at(10_002))
        .await
        .unwrap();
    assert_eq!(claim(&store, "q", 10, at(10_003)).await.len(), 1);
    let paused = store.set_queue_paused("q", true, at(10_004)).await.unwrap();
    assert_eq!(paused.max_running, Some(3));
    store
        .set_queue_limits("q", &running_limit(None), at(10_005))
        .await
        .unwrap();
    assert!(
        claim(&store, "q", 10, at(10_006)).await.is_empty(),
        "still paused"
    );
    let resumed = store
        .set_queue_paused("q", false, at(10_007))
        .await
        .unwrap();
    assert_eq!(resumed.max_running, None);
    let rest = claim(&store, "q", 10, at(10_008)).await;
    assert!(!rest.is_empty(), "unlimited again");
    // Other queues never counted against it.
    insert_n(&store, "r", 4).await;
    assert_eq!(claim(&store, "r", 10, at(10_009)).await.len(), 4);
    // A limit of zero is a pause by another name: refused.
    assert!(matches!(
        store
            .set_queue_limits("q", &running_limit(Some(0)), at(10_010))
            .await,
        Err(errand_core::StoreError::InvalidQueue { .. })
    ));
}

/// Each queue's oldest available job's due time (its lag's start): scheduled and running
/// jobs do not count, a queue with nothing available is left out.
pub async fn oldest_available_is_the_earliest_due_waiting_job<S: Store>(store: S) {
    let due = |queue: &str, secs: i64| {
        let mut j = job("k", queue);
        j.run_at = at(secs);
        j
    };
    // Inserted at t0: run_at in the past is available, in the future scheduled.
    store
        .insert(
            vec![
                due("q", -30),
                due("q", -90),
                due("q", 50),
                due("r", -10),
                due("busy", -500),
            ],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(claim(&store, "busy", 1, at(1)).await.len(), 1);
    let oldest = store.oldest_available().await.unwrap();
    assert_eq!(
        oldest,
        vec![("q".to_owned(), at(-90)), ("r".to_owned(), at(-10))]
    );
}

/// `queues_with_available` names exactly the asked queues that have an available job (not
/// scheduled, running or finished ones), whatever their names hold.
pub async fn queues_with_available_names_those_with_work<S: Store>(store: S) {
    insert_n(&store, "ready", 2).await;
    insert_n(&store, "it's; --", 1).await;
    let mut later = job("noop", "later");
    later.run_at = at(3600);
    store.insert(vec![later], t0()).await.unwrap();
    insert_n(&store, "taken", 1).await;
    assert_eq!(claim(&store, "taken", 10, at(1)).await.len(), 1);
    let asked: Vec<String> = ["ready", "later", "taken", "none", "it's; --"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut found = store.queues_with_available(&asked).await.unwrap();
    found.sort();
    assert_eq!(found, vec!["it's; --".to_owned(), "ready".to_owned()]);
    assert!(store.queues_with_available(&[]).await.unwrap().is_empty());
    let many: Vec<String> = (0..600).map(|i| format!("q{i}")).collect();
    assert!(store.queues_with_available(&many).await.unwrap().is_empty());
}
