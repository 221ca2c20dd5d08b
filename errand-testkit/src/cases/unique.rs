//! Uniqueness chosen per job: the final states that also hold a key, and the period after
//! which a finished job lets it go; decided by the store, race-free.

use errand_core::{FinishAction, JobState, ListFilter, NewJob, Store, UniqueStates};

use crate::helpers::*;

/// A job with `key` that also holds it when `finals`, for `period_s` after finishing.
fn keyed(key: &str, finals: &[JobState], period_s: Option<i64>) -> NewJob {
    let mut j = job("k", "q");
    j.unique_key = Some(key.to_owned());
    j.unique_states = UniqueStates::with(finals.iter().copied());
    j.unique_for_ms = period_s.map(|s| s * 1000);
    j
}

async fn run_to<S: Store>(store: &S, at_s: i64, action: FinishAction) -> i64 {
    let r = claim(store, "q", 1, at(at_s)).await.remove(0);
    let applied = store.finish(&[finish(&r, at(at_s), action)]).await.unwrap();
    assert_eq!(applied, vec![r.id]);
    r.id
}

/// A finished job goes on holding its key in the final states it names, and only those.
pub async fn a_finished_job_holds_its_key_in_the_chosen_final_states<S: Store>(store: S) {
    let first = insert_one(&store, keyed("done-once", &[JobState::Completed], None)).await;
    assert_eq!(run_to(&store, 1, FinishAction::Complete).await, first);
    let again = store
        .insert(
            vec![keyed("done-once", &[JobState::Completed], None)],
            at(2),
        )
        .await
        .unwrap()[0];
    assert!(!again.inserted, "a completed twin holds the key");
    assert_eq!(again.id, first);
    let row = get(&store, first).await;
    assert_eq!(row.unique_states, UniqueStates::with([JobState::Completed]));

    // Discarded is not among the chosen states: a discarded job lets its key go.
    let failed = insert_one(&store, keyed("retry-me", &[JobState::Completed], None)).await;
    let r = claim(&store, "q", 1, at(3)).await.remove(0);
    assert_eq!(r.id, failed);
    store
        .finish(&[finish(
            &r,
            at(3),
            FinishAction::Discard {
                error: error(&r, at(3), "gave up"),
            },
        )])
        .await
        .unwrap();
    let next = store
        .insert(vec![keyed("retry-me", &[JobState::Completed], None)], at(4))
        .await
        .unwrap()[0];
    assert!(next.inserted && next.id != failed, "{next:?}");
}

/// With a period, a finished job holds its key until the period has passed since it
/// finished, then the next insert takes it; a retry by hand is judged the same way.
pub async fn a_period_lets_the_key_go_after_it_passes<S: Store>(store: S) {
    let hourly = || keyed("hourly", &[JobState::Completed], Some(60));
    let first = insert_one(&store, hourly()).await;
    run_to(&store, 10, FinishAction::Complete).await;
    let within = store.insert(vec![hourly()], at(69)).await.unwrap()[0];
    assert_eq!(
        (within.inserted, within.id),
        (false, first),
        "within the period"
    );
    let after = store.insert(vec![hourly()], at(70)).await.unwrap()[0];
    assert!(after.inserted, "the period passed: {after:?}");
    let second = after.id;
    // The first one holds no more.
    assert!(!get(&store, first)
        .await
        .unique_states
        .holds(JobState::Completed));

    // The second completes at 80: it holds until 140. Retrying the first by hand at 100
    // would make two holders: it stays as it is; at 140 it may go.
    run_to(&store, 80, FinishAction::Complete).await;
    let stays = store.retry_now(first, at(100)).await.unwrap().unwrap();
    assert_eq!(stays.state, JobState::Completed);
    let goes = store.retry_now(first, at(140)).await.unwrap().unwrap();
    assert_eq!(goes.state, JobState::Available);
    let dup = store.insert(vec![hourly()], at(141)).await.unwrap()[0];
    assert_eq!(
        (dup.inserted, dup.id),
        (false, first),
        "the retried job holds it"
    );
    assert_eq!(get(&store, second).await.state, JobState::Completed);
}

/// Sixteen inserts racing for a key whose finished holder's period has just passed: one
/// is written, the others name it.
pub async fn racing_inserts_after_a_period_insert_once<S: Store + Clone>(store: S) {
    let make = || keyed("race", &[JobState::Completed], Some(5));
    let first = insert_one(&store, make()).await;
    run_to(&store, 1, FinishAction::Complete).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.insert(vec![make()], at(10)).await.expect("insert")[0]
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let holder = assert_one_inserted(&results);
    assert_ne!(holder, first);
    assert_eq!(store.count(&ListFilter::new()).await.unwrap(), 2);
}
