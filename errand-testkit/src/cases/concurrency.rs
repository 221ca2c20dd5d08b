//! Races between claimers, inserters and the rescuer.

use std::collections::HashSet;
use std::sync::Arc;

use errand_core::{FinishAction, JobState, ListFilter, Store};

use crate::helpers::*;

/// 8 claimers race over 2,000 jobs: every job is claimed exactly once.
pub async fn racing_claimers_claim_each_job_once<S: Store + Clone>(store: S) {
    let ids = {
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.extend(insert_n(&store, "race", 500).await);
        }
        ids
    };
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let mut req = claim_req("race", 25, at(1));
                req.worker_id = format!("w{w}");
                let rows = store.claim(&req).await.expect("claim");
                if rows.is_empty() {
                    break;
                }
                mine.extend(rows.iter().map(|r| (r.id, r.attempt)));
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for (id, attempt) in t.await.unwrap() {
            assert_eq!(attempt, 1, "job {id} claimed with attempt {attempt}");
            assert!(seen.insert(id), "job {id} claimed twice");
            total += 1;
        }
    }
    assert_eq!(total, ids.len(), "every job claimed");
    assert_eq!(
        store
            .count(&ListFilter::new().state(JobState::Running))
            .await
            .unwrap(),
        2000
    );
}

/// 8 tasks insert the same unique key at once: exactly one insert wins, all see its id.
pub async fn racing_unique_inserts_insert_once<S: Store + Clone>(store: S) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut j = job("k", "q");
            j.unique_key = Some("only-one".into());
            store.insert(vec![j], t0()).await.expect("insert")[0]
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_one_inserted(&results);
    assert_eq!(store.count(&ListFilter::new()).await.unwrap(), 1);
}

/// A worker finishing while the rescuer reclaims: exactly one of them wins per job.
pub async fn racing_outcomes_and_rescue_leave_one_result<S: Store + Clone>(store: S) {
    insert_n(&store, "q", 200).await;
    let rows = Arc::new(claim(&store, "q", 200, at(1)).await);
    let finisher = {
        let (store, rows) = (store.clone(), rows.clone());
        tokio::spawn(async move {
            let mut applied = Vec::new();
            for chunk in rows.chunks(10) {
                let batch: Vec<_> = chunk
                    .iter()
                    .map(|r| finish(r, at(40), FinishAction::Complete))
                    .collect();
                applied.extend(store.finish(&batch).await.unwrap());
            }
            applied
        })
    };
    let rescuer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut n = 0;
            for _ in 0..20 {
                n += store.rescue_expired(at(40), 10).await.unwrap().retried;
            }
            n
        })
    };
    let completed = finisher.await.unwrap().len() as u64;
    let rescued = rescuer.await.unwrap();
    assert_eq!(
        completed + rescued,
        200,
        "completed {completed} + rescued {rescued}"
    );
    let done = store
        .count(&ListFilter::new().state(JobState::Completed))
        .await
        .unwrap();
    let retry = store
        .count(&ListFilter::new().state(JobState::Retryable))
        .await
        .unwrap();
    assert_eq!((done, retry), (completed, rescued));
}

/// 8 claimers race over a queue limited to 3 running jobs, each claiming, completing one of
/// what it holds and claiming again: at no moment do more than 3 run, and every job runs.
pub async fn racing_claimers_never_exceed_a_queue_limit<S: Store + Clone + 'static>(store: S) {
    let ids = insert_n(&store, "capped", 60).await;
    store
        .set_queue_limits("capped", &running_limit(Some(3)), at(0))
        .await
        .unwrap();
    let total = race_claimers(&store, "capped", 5, |store: S| async move {
        let running = store
            .count(&ListFilter::new().queue("capped").state(JobState::Running))
            .await
            .unwrap();
        assert!(running <= 3, "{running} running under a limit of 3");
    })
    .await;
    assert_eq!(total, ids.len(), "every job ran, once");
}
