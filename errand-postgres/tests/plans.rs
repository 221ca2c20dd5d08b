//! The plans of the per-state-group queries on Postgres: each group's predicate, as
//! `errand_core::state_predicates` writes it (OR chains), is matched to that group's partial
//! index, whose own predicate is written as an `IN` list.

use errand_core::{state_predicates, JobState, STATE_INDEX_GROUPS};
use errand_postgres::testing::scratch_store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_state_group_is_counted_on_its_index() {
    let store = scratch_store().await;
    let table = format!("\"{}\".jobs", store.schema());
    let preds = state_predicates(&JobState::ALL);
    assert_eq!(preds.len(), STATE_INDEX_GROUPS.len());
    let mut tx = store.pool().begin().await.unwrap();
    // An empty table would be scanned whatever the indexes: ask what the planner can use.
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    for (pred, index) in preds.iter().zip([
        Some("jobs_pending"),
        Some("jobs_claim"),
        Some("jobs_lease"),
        Some("jobs_due"),
        Some("jobs_dead"),
        None, // completed jobs have no index of their own
    ]) {
        let Some(index) = index else { continue };
        let plan: Vec<String> = sqlx::query_scalar(&format!(
            "EXPLAIN SELECT count(*) FROM {table} WHERE {pred} AND queue = 'q'"
        ))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains(index), "{pred}: expected {index}\n{plan}");
    }
    // A narrowed group (only retryable) still uses its group's index.
    let narrowed = &state_predicates(&[JobState::Retryable])[0];
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN SELECT count(*) FROM {table} WHERE {narrowed} AND queue = 'q'"
    ))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert!(plan.join("\n").contains("jobs_due"), "{plan:?}");
}

/// The holder of a unique key is found by the unique index: the lookup repeats the index's
/// predicate (`errand_core::UNIQUE_HOLDS_SQL`, also the migration's text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unique_key_holder_is_found_by_the_unique_index() {
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        squash(include_str!("../migrations/0005_unique.sql"))
            .contains(&squash(errand_core::UNIQUE_HOLDS_SQL)),
        "the index predicate and UNIQUE_HOLDS_SQL differ"
    );
    let store = scratch_store().await;
    let table = format!("\"{}\".jobs", store.schema());
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN SELECT id FROM {table} WHERE unique_key = ANY('{{a,b}}') AND {}",
        errand_core::UNIQUE_HOLDS_SQL
    ))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("jobs_unique"), "{plan}");
}

/// Every node of an `EXPLAIN (FORMAT JSON)` plan, depth first.
fn nodes(plan: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = vec![plan];
    for child in plan["Plans"].as_array().into_iter().flatten() {
        out.extend(nodes(child));
    }
    out
}

/// Statistics taken before a bulk enqueue (20,000 rows, half of them completed), then
/// 200,000 jobs enqueued and no ANALYZE: the planner, unable to read the claim's LIMIT (a
/// function call), assumes a tenth of the queue. The claim must still walk the claim index in
/// order and fetch the claimed rows by primary key: a claim of 100 reads a few hundred
/// buffers, not the queue (a bitmap scan and a sort) or the table (a sequential scan to join
/// the ids back, which the claim did before migration 8: 191 ms for one claim of 100 among
/// 1M jobs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_keeps_its_index_plan_with_stale_statistics() {
    let store = scratch_store().await;
    let t = format!("\"{}\".jobs", store.schema());
    let pool = store.pool();
    for sql in [
        format!("ALTER TABLE {t} SET (autovacuum_enabled = false)"),
        format!(
            "INSERT INTO {t} (kind, queue, args, state, max_attempts, run_at, created_at, finalized_at)
             SELECT 'k', 'q', '{{}}', CASE WHEN g % 2 = 0 THEN 'completed' ELSE 'available' END,
                    3, now() - random() * interval '1 day', now(), now()
             FROM generate_series(1, 20000) g"
        ),
        format!("ANALYZE {t}"),
        format!(
            "INSERT INTO {t} (kind, queue, args, state, max_attempts, run_at, created_at)
             SELECT 'k', 'q', '{{}}', 'available', 3, now(), now() FROM generate_series(1, 200000)"
        ),
    ] {
        sqlx::query(&sql).execute(pool).await.unwrap();
    }
    let now = chrono::Utc::now();
    for which in ["claim", "claim_from", "claim_metered"] {
        let sql = errand_postgres::testing::statement(&store, which);
        let mut tx = pool.begin().await.unwrap();
        let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}");
        let mut query = sqlx::query_scalar(&explain)
            .bind(now)
            .bind("w")
            .bind(now + chrono::TimeDelta::minutes(5))
            .bind("q")
            .bind(100_i64)
            .bind(None::<i64>);
        if which == "claim_from" {
            // A floor below every job: the walk is the whole queue's, as from the front.
            query = query
                .bind(0_i16)
                .bind(now - chrono::TimeDelta::days(2))
                .bind(i64::MIN);
        }
        let plan: serde_json::Value = query.fetch_one(&mut *tx).await.unwrap();
        tx.rollback().await.unwrap();
        let top = &plan[0]["Plan"];
        let text = serde_json::to_string_pretty(&plan).unwrap();
        assert_eq!(top["Actual Rows"], 100, "{which} claimed 100\n{text}");
        for node in nodes(top) {
            let kind = node["Node Type"].as_str().unwrap_or("");
            assert!(
                !["Seq Scan", "Bitmap Heap Scan", "Sort", "Hash Join"].contains(&kind),
                "{which}: a {kind} on stale statistics\n{text}"
            );
        }
        let blocks = |k: &str| top[k].as_u64().unwrap_or(0);
        let read = blocks("Shared Hit Blocks") + blocks("Shared Read Blocks");
        assert!(
            read < 3_000,
            "{which} read {read} buffers to claim 100 of 200,000 jobs\n{text}"
        );
        eprintln!("{which}: 100 of 200,000 with stale statistics: {read} buffers");
    }
}
