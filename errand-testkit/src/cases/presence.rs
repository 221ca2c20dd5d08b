//! The worker registry: records replaced by their heartbeat, removed on stop, forgotten
//! after a silence.

use errand_core::{Store, WorkerQueue, WorkerRecord};

use crate::helpers::*;

fn record(id: &str, started: i64, beat: i64, running: u32) -> WorkerRecord {
    WorkerRecord::new(
        id,
        "host-a",
        4242,
        "0.1.0",
        vec![
            WorkerQueue {
                name: "default".into(),
                concurrency: 10,
            },
            WorkerQueue {
                name: "mail <b>".into(),
                concurrency: 2,
            },
        ],
        at(started),
        at(beat),
        running,
        10_000,
    )
}

/// A record reads back exactly; a heartbeat replaces it; records list oldest started
/// first; a stopped worker's record is gone.
pub async fn a_worker_record_is_kept_replaced_and_removed<S: Store>(store: S) {
    assert!(store.workers().await.unwrap().is_empty());
    store.register_worker(&record("w2", 5, 5, 0)).await.unwrap();
    store.register_worker(&record("w1", 1, 1, 0)).await.unwrap();
    store
        .register_worker(&record("w1", 1, 11, 7))
        .await
        .unwrap();
    let all = store.workers().await.unwrap();
    assert_eq!(all, vec![record("w1", 1, 11, 7), record("w2", 5, 5, 0)]);
    store.deregister_worker("w1").await.unwrap();
    store.deregister_worker("nobody").await.unwrap();
    let ids: Vec<String> = store
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["w2"]);
}

/// Workers silent since before the cutoff are forgotten; the others stay.
pub async fn silent_workers_are_forgotten<S: Store>(store: S) {
    store
        .register_worker(&record("old", 0, 10, 1))
        .await
        .unwrap();
    store
        .register_worker(&record("new", 0, 100, 1))
        .await
        .unwrap();
    assert_eq!(
        store.forget_workers(at(10)).await.unwrap(),
        0,
        "at the cutoff is kept"
    );
    assert_eq!(store.forget_workers(at(50)).await.unwrap(), 1);
    let ids: Vec<String> = store
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["new"]);
}
