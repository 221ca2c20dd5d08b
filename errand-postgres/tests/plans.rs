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
