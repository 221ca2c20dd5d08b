//! `Store::reclaim` on Postgres: a `VACUUM` of the jobs table once it holds more dead row
//! versions than the threshold, nothing below it.

use std::time::{Duration, Instant};

use errand_core::Store;
use errand_postgres::testing::scratch_store;
use errand_testkit::helpers::{at, claim, job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_table_is_vacuumed_past_the_threshold() {
    let store = scratch_store().await;
    let table = format!("\"{}\".jobs", store.schema());
    // Autovacuum must not do it first.
    sqlx::query(&format!(
        "ALTER TABLE {table} SET (autovacuum_enabled = false)"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    store
        .insert((0..3000).map(|_| job("k", "q")).collect(), at(0))
        .await
        .unwrap();
    for _ in 0..30 {
        assert_eq!(claim(&store, "q", 100, at(1)).await.len(), 100);
    }
    let dead = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT coalesce(n_dead_tup, 0) FROM pg_stat_all_tables WHERE relid = $1::regclass",
        )
        .bind(&table)
        .fetch_one(store.pool())
        .await
        .unwrap();
        n
    };
    // Backends report their counts within a few seconds of their last write.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dead().await < 3000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        dead().await >= 3000,
        "3,000 claims left {} dead rows",
        dead().await
    );
    assert!(
        !store.reclaim(10_000).await.unwrap(),
        "below the threshold: nothing"
    );
    assert!(store.reclaim(1_000).await.unwrap(), "past it: vacuumed");
    assert!(
        dead().await < 1_000,
        "{} dead rows after the vacuum",
        dead().await
    );
    assert!(
        !store.reclaim(1_000).await.unwrap(),
        "and nothing left to do"
    );
}
