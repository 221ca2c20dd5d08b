//! Claims start at a floor (migration 12, `claim_floor.rs`): what a held snapshot keeps at
//! the front of a queue is not walked by every claim, a more urgent job is never behind the
//! floor, and a job that became available below it is met by the next walk from the front.

use std::time::{Duration, Instant};

use errand_core::{NewJob, Store};
use errand_postgres::testing::{claim_floor, scratch_store};
use errand_testkit::helpers::{at, claim, job};

fn job_at(secs: i64) -> NewJob {
    let mut j = job("k", "q");
    j.run_at = at(secs);
    j
}

/// Ten jobs due 0–9 s, enqueued at 100 s, and five of them claimed: the claim set a floor.
async fn claimed_half() -> errand_postgres::PgStore {
    let store = scratch_store().await;
    store
        .insert((0..10).map(job_at).collect(), at(100))
        .await
        .unwrap();
    assert_eq!(claim(&store, "q", 5, at(100)).await.len(), 5);
    assert!(claim_floor(&store, "q").is_some(), "the claim set a floor");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_more_urgent_job_is_never_behind_the_floor() {
    let store = claimed_half().await;
    // Due an hour before every job, and more urgent: first in claim order.
    let mut urgent = job_at(-3600);
    urgent.priority = -1;
    let id = store.insert(vec![urgent], at(100)).await.unwrap()[0].id;
    let next = claim(&store, "q", 1, at(100)).await;
    assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_below_the_floor_is_met_by_the_next_walk_from_the_front() {
    let store = claimed_half().await;
    // Same priority, due an hour before the jobs claimed (a retry by hand of an old job, a
    // transaction that committed late): below the floor.
    let old = store.insert(vec![job_at(-3600)], at(100)).await.unwrap()[0].id;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut claimed = Vec::new();
    while !claimed.contains(&old) && Instant::now() < deadline {
        claimed.extend(claim(&store, "q", 1, at(100)).await.iter().map(|j| j.id));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        claimed.contains(&old),
        "the job below the floor was not claimed within 5 s (claimed {claimed:?})"
    );
}

/// Buffers a claim of `q` reads, from the front or from `floor` (in a transaction rolled
/// back), and the jobs it finds.
async fn claim_cost(
    store: &errand_postgres::PgStore,
    floor: Option<(i16, chrono::DateTime<chrono::Utc>, i64)>,
) -> (u64, u64) {
    let s = store.schema();
    let sql = match floor {
        None => format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM \"{s}\".claim_ids('q', 100, 'w', NULL)"),
        Some(_) => format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM \"{s}\".claim_ids_from('q', 100, 'w', NULL, $1, $2, $3)"),
    };
    // Twice on one connection, each rolled back, the second measured: a session's first
    // call of a function also reads the catalogs to plan it (hundreds of buffers).
    let mut conn = store.pool().acquire().await.unwrap();
    let mut plan = serde_json::Value::Null;
    for _ in 0..2 {
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        let mut query = sqlx::query_scalar(&sql);
        if let Some((p, r, i)) = floor {
            query = query.bind(p).bind(r).bind(i);
        }
        plan = query.fetch_one(&mut *tx).await.unwrap();
        tx.rollback().await.unwrap();
    }
    let top = &plan[0]["Plan"];
    let n = |k: &str| top[k].as_u64().unwrap_or(0);
    (
        n("Shared Hit Blocks") + n("Shared Read Blocks"),
        n("Actual Rows"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_snapshot_is_not_walked_by_claims_from_the_floor() {
    let store = scratch_store().await;
    // A session that took a snapshot and sits idle in its transaction: from now on no dead
    // row version of the jobs table can be removed.
    let mut holder = store.pool().acquire().await.unwrap();
    for sql in [
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "SELECT count(*) FROM pg_class",
    ] {
        sqlx::query(sql).execute(&mut *holder).await.unwrap();
    }
    // Rows of 1.5 kB, five to a page, as jobs enqueued over time lie: a walk visits a page
    // per few entries (the buffers below count pages).
    let wide = |i: i64| {
        let mut j = job_at(i / 10);
        j.args = serde_json::json!({ "pad": "x".repeat(1500) }).to_string();
        j
    };
    store
        .insert((0..3000).map(wide).collect(), at(400))
        .await
        .unwrap();
    for _ in 0..30 {
        assert_eq!(claim(&store, "q", 100, at(400)).await.len(), 100);
    }
    store
        .insert((0..10).map(|_| job_at(400)).collect(), at(400))
        .await
        .unwrap();
    let floor = claim_floor(&store, "q").expect("the claims set a floor");
    let (front, found_front) = claim_cost(&store, None).await;
    let (from_floor, found_floor) = claim_cost(&store, Some(floor)).await;
    assert_eq!(
        (found_front, found_floor),
        (10, 10),
        "both find the 10 new jobs"
    );
    eprintln!("claim with 3,000 claimed jobs held: from the front {front} buffers, from the floor {from_floor}");
    assert!(
        from_floor * 10 < front,
        "from the floor {from_floor} buffers, from the front {front}: the floor skips nothing"
    );
    sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
}
