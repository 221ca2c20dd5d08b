//! Jobs finished per minute: each finish counted once, in its minute, from the mark on.

use std::time::Duration;

use errand_core::{FinishAction, JobState, Store};

use crate::helpers::*;

/// Finishes `n` jobs of `queue` at `secs` with `action` (each claimed first).
async fn finish_at<S: Store>(store: &S, queue: &str, n: usize, secs: i64, action: FinishAction) {
    insert_n(store, queue, n).await;
    let rows = claim(store, queue, n as u32, at(secs)).await;
    assert_eq!(rows.len(), n);
    let batch: Vec<_> = rows
        .iter()
        .map(|r| finish(r, at(secs), action.clone()))
        .collect();
    assert_eq!(store.finish(&batch).await.unwrap().len(), n);
}

/// Jobs are counted in the minute they finished, by queue and final state; a second tally
/// counts only what finished after the first; nothing before the window is counted.
pub async fn finished_jobs_are_tallied_once_per_minute<S: Store>(store: S) {
    let hour = Duration::from_secs(3600);
    // t0 is on a minute: 5 s and 50 s fall in minute 0, 70 s in minute 1.
    finish_at(&store, "a", 2, 5, FinishAction::Complete).await;
    finish_at(&store, "a", 1, 50, FinishAction::Complete).await;
    let err = error(&get_any(&store).await, at(70), "boom");
    finish_at(&store, "b", 1, 70, FinishAction::Discard { error: err }).await;
    assert_eq!(store.tally_finished(at(60), hour).await.unwrap(), 3);
    assert_eq!(
        store.tally_finished(at(60), hour).await.unwrap(),
        0,
        "nothing new"
    );
    assert_eq!(store.tally_finished(at(120), hour).await.unwrap(), 1);
    let got: Vec<(i64, String, JobState, u64)> = store
        .finished_per_minute(at(0))
        .await
        .unwrap()
        .into_iter()
        .map(|m| ((m.minute - at(0)).num_seconds(), m.queue, m.state, m.count))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "a".into(), JobState::Completed, 3),
            (60, "b".into(), JobState::Discarded, 1),
        ]
    );
    assert_eq!(
        store.finished_per_minute(at(60)).await.unwrap().len(),
        1,
        "since"
    );
    // Two tallies that each end inside minute 2: the second adds to the first's count.
    finish_at(&store, "a", 1, 150, FinishAction::Complete).await;
    assert_eq!(store.tally_finished(at(170), hour).await.unwrap(), 1);
    finish_at(&store, "a", 1, 175, FinishAction::Complete).await;
    assert_eq!(store.tally_finished(at(240), hour).await.unwrap(), 1);
    let m2: Vec<u64> = store
        .finished_per_minute(at(120))
        .await
        .unwrap()
        .iter()
        .filter(|m| m.queue == "a")
        .map(|m| m.count)
        .collect();
    assert_eq!(m2, vec![2], "one row for minute 2");
}

/// A first tally (or one after a long pause) reaches back no further than its window.
pub async fn a_tally_reaches_back_only_its_window<S: Store>(store: S) {
    finish_at(&store, "a", 1, 0, FinishAction::Complete).await;
    finish_at(&store, "a", 1, 600, FinishAction::Complete).await;
    let n = store
        .tally_finished(at(630), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(n, 1, "only the one within the last minute");
}

/// Tallies racing each other count every finished job exactly once.
pub async fn racing_tallies_count_each_job_once<S: Store + Clone>(store: S) {
    finish_at(&store, "a", 20, 10, FinishAction::Complete).await;
    let hour = Duration::from_secs(3600);
    let mut tasks = Vec::new();
    for i in 0..4 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.tally_finished(at(20 + i), hour).await.unwrap()
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 20);
    let m = store.finished_per_minute(at(0)).await.unwrap();
    assert_eq!(m.iter().map(|m| m.count).sum::<u64>(), 20);
}

async fn get_any<S: Store>(store: &S) -> errand_core::JobRow {
    let id = insert_one(store, job("probe", "probe")).await;
    get(store, id).await
}
