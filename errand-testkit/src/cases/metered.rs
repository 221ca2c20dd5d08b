//! Metered queues: per-key limits (partition keys) and rate limits, kept by the claim.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use errand_core::{
    FinishAction, JobId, JobRow, JobState, ListFilter, NewJob, QueueLimits, RateLimit, Store,
    StoreError,
};

use crate::helpers::*;

fn keyed(queue: &str, key: Option<&str>) -> NewJob {
    let mut j = job("sync", queue);
    j.partition_key = key.map(str::to_owned);
    j
}

fn per_key(n: u32) -> QueueLimits {
    QueueLimits::default().max_per_key(n)
}

fn rate(starts: u32, period_ms: u64) -> QueueLimits {
    QueueLimits::default().rate(RateLimit::new(
        starts,
        std::time::Duration::from_millis(period_ms),
    ))
}

fn ms(n: i64) -> DateTime<Utc> {
    at(0) + TimeDelta::milliseconds(n)
}

async fn complete<S: Store>(store: &S, rows: &[JobRow], now: DateTime<Utc>) {
    let batch: Vec<_> = rows
        .iter()
        .map(|r| finish(r, now, FinishAction::Complete))
        .collect();
    assert_eq!(store.finish(&batch).await.unwrap().len(), rows.len());
}

fn keys_of(rows: &[JobRow]) -> Vec<Option<&str>> {
    let mut k: Vec<_> = rows.iter().map(|r| r.partition_key.as_deref()).collect();
    k.sort();
    k
}

/// Under a per-key limit of one, a claim takes at most one job per key (jobs without a key
/// are not limited per key); a key's next job is claimable once its running one ends. The
/// key is stored, read back, and returned by the claim.
pub async fn a_per_key_limit_caps_each_key<S: Store>(store: S) {
    let mut jobs = Vec::new();
    for (key, n) in [("a", 3), ("b", 2), ("c", 1)] {
        jobs.extend((0..n).map(|_| keyed("k", Some(key))));
    }
    jobs.extend((0..2).map(|_| keyed("k", None)));
    store.insert(jobs, t0()).await.unwrap();
    let rec = store
        .set_queue_limits("k", &per_key(1), at(0))
        .await
        .unwrap();
    assert_eq!(
        (rec.max_per_key, rec.max_running, rec.rate),
        (Some(1), None, None)
    );
    assert!(rec.is_metered());
    let first = claim(&store, "k", 10, at(1)).await;
    assert_eq!(
        keys_of(&first),
        vec![None, None, Some("a"), Some("b"), Some("c")],
        "one per key, and the jobs without a key"
    );
    let got = get(&store, first[0].id).await;
    assert_eq!(got.partition_key, first[0].partition_key, "read back");
    assert!(
        claim(&store, "k", 10, at(2)).await.is_empty(),
        "every key is at its limit"
    );
    let a = first
        .iter()
        .find(|r| r.partition_key.as_deref() == Some("a"))
        .unwrap();
    complete(&store, std::slice::from_ref(a), at(3)).await;
    let next = claim(&store, "k", 10, at(4)).await;
    assert_eq!(keys_of(&next), vec![Some("a")], "a's slot came back");
    // A job released unstarted gives its key's slot back too.
    store.release(&[next[0].lease_ref()], at(5)).await.unwrap();
    assert_eq!(
        keys_of(&claim(&store, "k", 10, at(6)).await),
        vec![Some("a")]
    );
    // Raising the limit lets a second job of a key start.
    store
        .set_queue_limits("k", &per_key(2), at(7))
        .await
        .unwrap();
    let more = claim(&store, "k", 10, at(8)).await;
    assert_eq!(keys_of(&more), vec![Some("a"), Some("b")]);
}

/// Keys take turns: with one key's long backlog ahead of the others in claim order, claims
/// of one job each go round every key before any key gets a second turn.
pub async fn keys_take_turns_whatever_their_backlog<S: Store>(store: S) {
    let mut jobs: Vec<NewJob> = (0..50).map(|_| keyed("t", Some("big"))).collect();
    for k in ["k1", "k2", "k3", "k4"] {
        jobs.extend((0..3).map(|_| keyed("t", Some(k))));
    }
    store.insert(jobs, t0()).await.unwrap();
    store
        .set_queue_limits("t", &per_key(1), at(0))
        .await
        .unwrap();
    let mut order = Vec::new();
    for i in 0..10 {
        let rows = claim(&store, "t", 1, at(1 + i)).await;
        assert_eq!(rows.len(), 1, "claim {i}");
        order.push(rows[0].partition_key.clone().unwrap());
        complete(&store, &rows, at(1 + i)).await;
    }
    let first_round: std::collections::BTreeSet<_> = order[..5].iter().collect();
    assert_eq!(
        first_round.len(),
        5,
        "every key once before any twice: {order:?}"
    );
    assert_eq!(order[..5], order[5..10], "the same turn order: {order:?}");
}

/// A rate limit meters starts: a claim takes no more than the bucket holds (a tenth of a
/// period's starts, at least one); tokens come back at the rate, never above the burst;
/// jobs over the limit stay available with no attempt used; a clock behind the last refill
/// adds nothing.
pub async fn a_rate_limit_meters_starts<S: Store>(store: S) {
    let ids = insert_n(&store, "r", 40).await;
    // 100 per second: a burst of 10, one token every 10 ms.
    store
        .set_queue_limits("r", &rate(100, 1000), ms(0))
        .await
        .unwrap();
    assert_eq!(claim(&store, "r", 50, ms(0)).await.len(), 10, "the burst");
    assert!(
        claim(&store, "r", 50, ms(0)).await.is_empty(),
        "bucket empty"
    );
    assert_eq!(
        claim(&store, "r", 50, ms(50)).await.len(),
        5,
        "5 tokens in 50 ms"
    );
    assert!(
        claim(&store, "r", 50, ms(-10_000)).await.is_empty(),
        "a clock behind adds nothing"
    );
    assert_eq!(
        claim(&store, "r", 50, ms(55)).await.len(),
        0,
        "half a token"
    );
    assert_eq!(claim(&store, "r", 50, ms(60)).await.len(), 1);
    assert_eq!(
        claim(&store, "r", 50, ms(60_000)).await.len(),
        10,
        "a long idle fills the bucket to the burst, no more"
    );
    let waiting = store
        .list(&ListFilter::new().queue("r").state(JobState::Available))
        .await
        .unwrap();
    assert_eq!(waiting.len(), ids.len() - 26);
    assert!(
        waiting.iter().all(|r| r.attempt == 0),
        "jobs over the limit used no attempt"
    );
    // A slow rate still lets one start (burst at least 1).
    store
        .set_queue_limits("r", &rate(1, 3_600_000), ms(70_000))
        .await
        .unwrap();
    assert_eq!(claim(&store, "r", 50, ms(70_000)).await.len(), 1);
    assert!(claim(&store, "r", 50, ms(80_000)).await.is_empty());
    // Removing it lets the rest go at once.
    store
        .set_queue_limits("r", &QueueLimits::default(), ms(90_000))
        .await
        .unwrap();
    assert_eq!(claim(&store, "r", 50, ms(90_000)).await.len(), 13);
}

/// A rate per key meters each key's starts with its own bucket (jobs without a key are not
/// limited per key); a changed rate per key starts every key's bucket full.
pub async fn a_rate_per_key_meters_each_key<S: Store>(store: S) {
    let mut jobs = Vec::new();
    for _ in 0..10 {
        jobs.push(keyed("rk", Some("a")));
        jobs.push(keyed("rk", Some("b")));
    }
    store.insert(jobs, t0()).await.unwrap();
    // 10 per second per key: a burst of 1, a token every 100 ms.
    let limits =
        QueueLimits::default().rate_per_key(RateLimit::new(10, std::time::Duration::from_secs(1)));
    let rec = store.set_queue_limits("rk", &limits, ms(0)).await.unwrap();
    assert_eq!(rec.limits(), limits);
    assert!(rec.is_metered());
    assert_eq!(
        keys_of(&claim(&store, "rk", 10, ms(0)).await),
        vec![Some("a"), Some("b")]
    );
    assert!(
        claim(&store, "rk", 10, ms(50)).await.is_empty(),
        "half a token each"
    );
    assert_eq!(
        keys_of(&claim(&store, "rk", 10, ms(100)).await),
        vec![Some("a"), Some("b")]
    );
    store
        .insert(
            vec![keyed("rk", None), keyed("rk", None), keyed("rk", None)],
            ms(100),
        )
        .await
        .unwrap();
    assert_eq!(
        keys_of(&claim(&store, "rk", 10, ms(110)).await),
        vec![None, None, None],
        "jobs without a key are not limited per key"
    );
    assert_eq!(
        claim(&store, "rk", 10, ms(60_000)).await.len(),
        2,
        "a long idle fills each key's bucket to its burst, no more"
    );
    let faster =
        QueueLimits::default().rate_per_key(RateLimit::new(20, std::time::Duration::from_secs(1)));
    store
        .set_queue_limits("rk", &faster, ms(60_000))
        .await
        .unwrap();
    assert_eq!(
        claim(&store, "rk", 10, ms(60_000)).await.len(),
        4,
        "the new rate's buckets start full (burst 2 each)"
    );
}

/// Limits combine: a queue-wide limit, a per-key limit and a rate limit together take the
/// smallest of what each allows; pausing keeps the limits and takes nothing; the record
/// reads back every limit.
pub async fn limits_combine_and_survive_pause<S: Store>(store: S) {
    let jobs: Vec<_> = (0..30)
        .map(|i| keyed("m", Some(["x", "y", "z"][i % 3])))
        .collect();
    store.insert(jobs, t0()).await.unwrap();
    let limits = QueueLimits::default()
        .max_running(4)
        .max_per_key(2)
        .rate(RateLimit::new(50, std::time::Duration::from_secs(1)));
    store.set_queue_limits("m", &limits, ms(0)).await.unwrap();
    store.set_queue_paused("m", true, ms(1)).await.unwrap();
    assert!(claim(&store, "m", 10, ms(2)).await.is_empty(), "paused");
    let rec = store.set_queue_paused("m", false, ms(3)).await.unwrap();
    assert_eq!(rec.limits(), limits, "pausing kept the limits");
    let first = claim(&store, "m", 10, ms(4)).await;
    assert_eq!(first.len(), 4, "the queue-wide limit is the smallest");
    let mut per: HashMap<_, usize> = HashMap::new();
    for r in &first {
        *per.entry(r.partition_key.clone()).or_default() += 1;
    }
    assert!(per.values().all(|n| *n <= 2), "{per:?}");
    complete(&store, &first, ms(5)).await;
    // The bucket (burst 5) had 1 left: only one more now, whatever the free slots.
    assert_eq!(claim(&store, "m", 10, ms(5)).await.len(), 1);
    let recs = store.queues().await.unwrap();
    let rec = recs.iter().find(|r| r.name == "m").unwrap();
    assert_eq!(rec.limits(), limits);
    assert!(!rec.paused);
}

/// Limits a store must refuse: zero per key, zero starts, a period of zero or over a day;
/// nothing is recorded. The record is created by a limit on first use.
pub async fn bad_limits_are_refused<S: Store>(store: S) {
    let bad = [
        per_key(0),
        rate(0, 1000),
        rate(5, 0),
        rate(5, 86_400_001),
        QueueLimits::default().max_running(0),
        QueueLimits::default().rate_per_key(RateLimit::new(0, std::time::Duration::from_secs(1))),
        QueueLimits::default().max_running(u32::MAX),
        per_key(1 << 31),
        rate(u32::MAX, 1000),
    ];
    for limits in bad {
        let res = store.set_queue_limits("q", &limits, at(0)).await;
        assert!(
            matches!(res, Err(StoreError::InvalidQueue { .. })),
            "{limits:?}: {res:?}"
        );
    }
    assert!(store.queues().await.unwrap().is_empty());
    let rec = store
        .set_queue_limits("q", &rate(5, 86_400_000), at(0))
        .await
        .unwrap();
    assert_eq!(rec.rate.map(|r| r.starts), Some(5));
    // The largest of each reads back as set, and a burst that large claims what there is.
    let huge = QueueLimits::default()
        .max_running(i32::MAX as u32)
        .max_per_key(i32::MAX as u32)
        .rate(RateLimit::new(
            i32::MAX as u32,
            std::time::Duration::from_millis(1),
        ));
    let rec = store.set_queue_limits("q", &huge, at(1)).await.unwrap();
    assert_eq!(rec.limits(), huge);
    insert_n(&store, "q", 3).await;
    assert_eq!(claim(&store, "q", 10, at(2)).await.len(), 3);
}

/// Partition keys are data: any bytes but control characters, compared as bytes, never SQL;
/// a job moved by retry or rescue keeps its key.
pub async fn partition_keys_are_data<S: Store>(store: S) {
    let odd = ["it's; DROP TABLE jobs; --", "é", "Z", "a", "\u{10FFFF}"];
    let ids: Vec<JobId> = store
        .insert(odd.iter().map(|k| keyed("d", Some(k))).collect(), t0())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    store
        .set_queue_limits("d", &per_key(1), at(0))
        .await
        .unwrap();
    let rows = claim(&store, "d", 10, at(1)).await;
    assert_eq!(rows.len(), odd.len(), "each key its own partition");
    for (id, key) in ids.iter().zip(odd) {
        assert_eq!(get(&store, *id).await.partition_key.as_deref(), Some(key));
    }
    let batch: Vec<_> = rows
        .iter()
        .map(|r| {
            let retry = FinishAction::Retry {
                run_at: at(2),
                error: error(r, at(2), "again"),
            };
            finish(r, at(2), retry)
        })
        .collect();
    store.finish(&batch).await.unwrap();
    let again = claim(&store, "d", 10, at(4)).await;
    assert_eq!(again.len(), odd.len());
    assert!(again.iter().all(|r| r.partition_key.is_some()));
}

/// 8 claimers race over a queue of 4 keys limited to one running job per key, each claiming,
/// completing what it holds and claiming again: at no moment do two jobs of a key run, and
/// every job runs once.
pub async fn racing_claimers_never_exceed_a_per_key_limit<S: Store + Clone + 'static>(store: S) {
    let jobs: Vec<_> = (0..60)
        .map(|i| keyed("race", Some(["a", "b", "c", "d"][i % 4])))
        .collect();
    store.insert(jobs, t0()).await.unwrap();
    store
        .set_queue_limits("race", &per_key(1), at(0))
        .await
        .unwrap();
    let total = race_claimers(&store, "race", 3, |store: S| async move {
        let running = store
            .list(&ListFilter::new().queue("race").state(JobState::Running))
            .await
            .unwrap();
        let mut per: HashMap<_, usize> = HashMap::new();
        for r in &running {
            *per.entry(r.partition_key.clone()).or_default() += 1;
        }
        assert!(
            per.values().all(|n| *n <= 1),
            "two of a key running: {per:?}"
        );
    })
    .await;
    assert_eq!(total, 60, "every job ran, once");
}

/// A claim may say what its worker holds of the queue (running or buffered,
/// `ClaimRequest::held`): a queue-wide limit then counts the other workers' running jobs
/// plus that, so the worker's finished jobs whose outcomes are on their way hold no slots;
/// another worker's claim still counts every row. The same on the plain and the metered
/// claim.
pub async fn a_limit_counts_what_the_claiming_worker_holds<S: Store>(store: S) {
    for (queue, limits) in [
        ("plain", QueueLimits::default().max_running(3)),
        (
            "metered",
            QueueLimits::default()
                .max_running(3)
                .rate(RateLimit::new(1000, std::time::Duration::from_millis(1))),
        ),
    ] {
        insert_n(&store, queue, 20).await;
        store.set_queue_limits(queue, &limits, at(0)).await.unwrap();
        let ask = |worker: &str, held: Option<u32>| {
            let mut req = claim_req(queue, 10, at(1));
            req.worker_id = worker.to_owned();
            req.held = held;
            req
        };
        let n = |rows: Vec<JobRow>| rows.len();
        assert_eq!(
            n(store.claim(&ask("w1", None)).await.unwrap()),
            3,
            "{queue}"
        );
        assert_eq!(
            n(store.claim(&ask("w1", None)).await.unwrap()),
            0,
            "{queue}: full"
        );
        // w1's three ended, their outcomes not written yet: w1 holds nothing.
        assert_eq!(
            n(store.claim(&ask("w1", Some(0))).await.unwrap()),
            3,
            "{queue}: its own finished jobs hold no slots"
        );
        assert_eq!(
            n(store.claim(&ask("w1", Some(2))).await.unwrap()),
            1,
            "{queue}: what it holds counts"
        );
        for held in [None, Some(0)] {
            assert_eq!(
                n(store.claim(&ask("w2", held)).await.unwrap()),
                0,
                "{queue}: another worker counts every row of w1"
            );
        }
    }
}

/// A claim walks past more than 1,000 keys at their limit (with jobs waiting) to the one that
/// can start (it stops early only once it found a job), so an empty claim means nothing
/// could start.
pub async fn a_claim_walks_past_a_thousand_keys_at_their_limit<S: Store>(store: S) {
    // Two jobs per key: one starts, one waits behind it (a key with nothing waiting is never
    // visited).
    let jobs = (0..2200)
        .map(|k| keyed("wide", Some(&format!("k{:04}", k % 1100))))
        .collect();
    store.insert(jobs, t0()).await.unwrap();
    store
        .set_queue_limits("wide", &per_key(1), at(0))
        .await
        .unwrap();
    let mut running = 0;
    while running < 1100 {
        let got = claim(&store, "wide", 2000, at(1)).await.len();
        assert!(got > 0, "{running} of 1,100 keys started, then nothing");
        running += got;
    }
    // Every key is at its limit with a job waiting; one more job behind them, of a new key.
    // Setting the limits again starts the walk afresh, at the first key: 1,100 keys at their
    // limit come first.
    store
        .insert(vec![keyed("wide", Some("zzz"))], at(2))
        .await
        .unwrap();
    store
        .set_queue_limits("wide", &per_key(1), at(2))
        .await
        .unwrap();
    let rows = claim(&store, "wide", 10, at(3)).await;
    assert_eq!(keys_of(&rows), vec![Some("zzz")]);
}
