//! Under a rate per key each key's bucket is a row; a full one (idle past its fill time) is
//! as good as none, and the claims delete them a few at a time: the table holds only the
//! keys that started recently.

use errand_core::{QueueLimits, RateLimit, Store};
use errand_postgres::testing::scratch_store;
use errand_testkit::helpers::{at, claim, job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_key_buckets_are_deleted_by_later_claims() {
    let store = scratch_store().await;
    let jobs = (0..50)
        .map(|k| {
            let mut j = job("sync", "q");
            j.partition_key = Some(format!("k{k:02}"));
            j
        })
        .collect();
    store.insert(jobs, at(0)).await.unwrap();
    let limits =
        QueueLimits::default().rate_per_key(RateLimit::new(1, std::time::Duration::from_secs(1)));
    store.set_queue_limits("q", &limits, at(0)).await.unwrap();
    let buckets = || async {
        let sql = format!("SELECT count(*) FROM \"{}\".queue_keys", store.schema());
        let (n,): (i64,) = sqlx::query_as(&sql).fetch_one(store.pool()).await.unwrap();
        n
    };
    assert_eq!(claim(&store, "q", 100, at(1)).await.len(), 50);
    assert_eq!(buckets().await, 50, "one per key that started");
    // Ten seconds on every bucket is full again (1 s fill time): the next claim, even one
    // that finds nothing, deletes them.
    assert!(claim(&store, "q", 100, at(11)).await.is_empty());
    assert_eq!(buckets().await, 0);
}
