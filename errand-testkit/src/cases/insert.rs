//! Inserting jobs: ids, initial state, payloads, unique keys, wake-ups.

use std::time::Duration;

use errand_core::{Backoff, InsertResult, JobState, NewJob, Store};

use crate::helpers::*;

/// Ids increase in insertion order and every field is stored as given.
pub async fn insert_returns_ids_in_order<S: Store>(store: S) {
    let res = store
        .insert(vec![job("a", "q"), job("b", "q"), job("c", "q")], t0())
        .await
        .unwrap();
    assert_eq!(res.len(), 3);
    assert!(res.iter().all(|r| r.inserted));
    assert!(res[0].id < res[1].id && res[1].id < res[2].id, "{res:?}");
    for (id, kind) in [(res[0].id, "a"), (res[1].id, "b"), (res[2].id, "c")] {
        let row = get(&store, id).await;
        assert_eq!(row.kind, kind);
        assert_eq!(row.state, JobState::Available);
        assert_eq!(row.attempt, 0);
        assert_eq!(row.created_at, t0());
    }
}

/// A job whose `run_at` is after the insert time starts `scheduled`.
pub async fn insert_future_run_at_is_scheduled<S: Store>(store: S) {
    let mut j = job("a", "q");
    j.run_at = at(60);
    let id = insert_one(&store, j).await;
    let row = get(&store, id).await;
    assert_eq!(row.state, JobState::Scheduled);
    assert_eq!(row.run_at, at(60));
    assert!(claim(&store, "q", 10, at(1)).await.is_empty());
}

/// Payload, priority, attempts, tags, backoff and timeout round-trip.
pub async fn insert_keeps_args_and_options<S: Store>(store: S) {
    let mut j = job("mail", "q");
    j.args = r#"{"to":"zoë@example.com","n":[1,2,3],"quote":"it's \"fine\"; drop table"}"#.into();
    j.priority = 3;
    j.max_attempts = 7;
    j.tags = vec!["a".into(), "b c".into()];
    j.backoff = Some(Backoff::constant(Duration::from_secs(5)));
    j.timeout_ms = Some(1500);
    let id = insert_one(&store, j.clone()).await;
    let row = get(&store, id).await;
    assert_eq!(json(&row.args), json(&j.args));
    assert_eq!(row.priority, 3);
    assert_eq!(row.max_attempts, 7);
    assert_eq!(row.tags, j.tags);
    assert_eq!(row.backoff, j.backoff);
    assert_eq!(row.timeout_ms, Some(1500));
    assert_eq!(row.queue, "q");
    assert!(row.errors.is_empty());
}

/// A batch keeps each job's own payload and options, whether its jobs share their options
/// (one job type enqueued many times) or differ in every one.
pub async fn insert_batch_keeps_each_jobs_options<S: Store>(store: S) {
    let mut shared = job("mail", "q");
    shared.priority = 2;
    shared.max_attempts = 4;
    shared.tags = vec!["t".into()];
    shared.backoff = Some(Backoff::constant(Duration::from_secs(3)));
    shared.timeout_ms = Some(900);
    let same: Vec<NewJob> = (0..3)
        .map(|n| {
            let mut j = shared.clone();
            j.args = format!(r#"{{"n":{n}}}"#);
            j.run_at = at(-n);
            j
        })
        .collect();
    // The same options, all due later: scheduled, however the store binds shared options.
    let later: Vec<NewJob> = same
        .iter()
        .zip(1..)
        .map(|(j, n)| NewJob {
            run_at: at(30 + n),
            ..j.clone()
        })
        .collect();
    let mut mixed = vec![job("a", "q1"), job("b", "q2"), job("c", "q1")];
    mixed[1].priority = -1;
    mixed[1].tags = vec!["x".into(), "y".into()];
    mixed[2].run_at = at(60); // due later: scheduled
    mixed[2].timeout_ms = Some(5);
    for batch in [same, later, mixed] {
        insert_and_check(&store, &batch, 1).await;
    }
}

/// Inserts `batch` at `t0`: every job inserted, ids in input order, and every `step`th job
/// stored as given (payload, options, state by its run time). Returns the results.
async fn insert_and_check<S: Store>(store: &S, batch: &[NewJob], step: usize) -> Vec<InsertResult> {
    let results = store.insert(batch.to_vec(), t0()).await.unwrap();
    assert_eq!(results.len(), batch.len());
    assert!(results.iter().all(|r| r.inserted));
    assert!(
        results.windows(2).all(|w| w[0].id < w[1].id),
        "ids in input order"
    );
    for (r, j) in results.iter().zip(batch).step_by(step) {
        let row = get(store, r.id).await;
        assert_eq!(
            (row.kind.as_str(), row.queue.as_str(), json(&row.args)),
            (j.kind.as_str(), j.queue.as_str(), json(&j.args))
        );
        assert_eq!(
            (row.priority, row.max_attempts, row.run_at, row.timeout_ms),
            (j.priority, j.max_attempts, j.run_at, j.timeout_ms)
        );
        assert_eq!((&row.tags, &row.backoff), (&j.tags, &j.backoff));
        assert_eq!((row.attempt, row.created_at), (0, t0()));
        let want = if j.run_at > t0() {
            JobState::Scheduled
        } else {
            JobState::Available
        };
        assert_eq!(row.state, want);
    }
    results
}

/// A large batch (6,000: Postgres copies batches from 5,000) keeps each job's payload and
/// options, hostile text included (tabs, newlines, backslashes, quotes, non-ASCII), with
/// ids in input order; the due ones are claimable, the rest scheduled.
pub async fn insert_large_batch_keeps_each_job<S: Store>(store: S) {
    let text = |i: usize| format!("tab\tnl\n back\\slash \"quote\" é🙂 {i}");
    let batch: Vec<NewJob> = (0..6000_usize)
        .map(|i| {
            let mut j = job(&format!("k{}\t{}", i % 3, i % 3), &format!("q{}", i % 2));
            j.args = serde_json::json!({ "n": i, "s": text(i) }).to_string();
            j.priority = (i % 5) as i16 - 2;
            j.max_attempts = 1 + (i % 4) as i32;
            j.run_at = if i % 10 == 0 {
                at(60)
            } else {
                at(-((i % 7) as i64))
            };
            if i % 2 == 0 {
                j.tags = vec![text(i), "x".into()];
            }
            if i % 3 == 0 {
                j.backoff = Some(Backoff::constant(Duration::from_secs(i as u64 % 50 + 1)));
            }
            if i % 4 == 0 {
                j.timeout_ms = Some(i as i64 + 1);
            }
            j
        })
        .collect();
    insert_and_check(&store, &batch, 7).await;
    let claimed = claim(&store, "q0", 10_000, t0()).await.len()
        + claim(&store, "q1", 10_000, t0()).await.len();
    assert_eq!(
        claimed, 5400,
        "every due job is claimable, no scheduled one"
    );
}

/// A second job with a held unique key is not written; the holder's id comes back.
pub async fn insert_unique_key_returns_existing_job<S: Store>(store: S) {
    let mut j = job("a", "q");
    j.unique_key = Some("k1".into());
    let first = store.insert(vec![j.clone()], t0()).await.unwrap()[0];
    assert!(first.inserted);
    let second = store.insert(vec![j], at(1)).await.unwrap()[0];
    assert!(!second.inserted);
    assert_eq!(second.id, first.id);
    assert_eq!(store.count(&Default::default()).await.unwrap(), 1);
}

/// Once the holder is final, the key can be used again.
pub async fn insert_unique_key_is_free_once_final<S: Store>(store: S) {
    let mut j = job("a", "q");
    j.unique_key = Some("k1".into());
    let first = insert_one(&store, j.clone()).await;
    let rows = claim(&store, "q", 1, at(1)).await;
    store
        .finish(&[finish(&rows[0], at(2), errand_core::FinishAction::Complete)])
        .await
        .unwrap();
    let again = store.insert(vec![j], at(3)).await.unwrap()[0];
    assert!(again.inserted);
    assert_ne!(again.id, first);
}

/// Two jobs with the same key in one batch: the first is written, the second points at it.
pub async fn insert_unique_key_in_one_batch<S: Store>(store: S) {
    let mut j = job("a", "q");
    j.unique_key = Some("same".into());
    let res = store.insert(vec![j.clone(), j], t0()).await.unwrap();
    assert!(res[0].inserted);
    assert!(!res[1].inserted);
    assert_eq!(res[0].id, res[1].id);
}

/// An empty batch writes nothing and does not fail.
pub async fn insert_empty_batch_is_ok<S: Store>(store: S) {
    assert!(store.insert(Vec::new(), t0()).await.unwrap().is_empty());
    assert_eq!(store.count(&Default::default()).await.unwrap(), 0);
}

/// Inserting an available job wakes that queue's producer.
pub async fn insert_wakes_the_queue<S: Store>(store: S) {
    let signal = store.signals().get("wake");
    let waiter = tokio::spawn(async move { signal.notified().await });
    tokio::task::yield_now().await;
    insert_n(&store, "wake", 1).await;
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("insert did not wake the queue within 5 s")
        .unwrap();
}

/// An id is never handed out again, even once the newest jobs are deleted: after the
/// newest alone, after every job, for single, batched and keyed inserts alike.
pub async fn ids_are_never_reused_after_the_newest_jobs_are_deleted<S: Store>(store: S) {
    let first = insert_n(&store, "q", 3).await;
    let deleted = first[2];
    assert!(matches!(
        store.delete(deleted).await.unwrap(),
        errand_core::DeleteResult::Deleted(_)
    ));
    let next = insert_one(&store, job("a", "q")).await;
    assert!(
        next > deleted,
        "id {next} after the newest, {deleted}, was deleted"
    );
    let mut highest = next;
    for id in [first[0], first[1], next] {
        store.delete(id).await.unwrap();
    }
    // Every job gone: a batch (more than a statement's worth of rows) starts above them,
    // its ids in insertion order.
    let batch = insert_n(&store, "q", 40).await;
    assert!(batch[0] > highest, "{batch:?} after {highest}");
    assert!(batch.windows(2).all(|w| w[0] < w[1]), "{batch:?}");
    highest = *batch.last().unwrap();
    for id in &batch {
        store.delete(*id).await.unwrap();
    }
    let mut keyed = job("a", "q");
    keyed.unique_key = Some("k".into());
    let keyed = insert_one(&store, keyed).await;
    assert!(keyed > highest, "keyed id {keyed} after {highest}");
}
