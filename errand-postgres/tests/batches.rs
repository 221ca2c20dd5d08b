//! The batched statements on running jobs (outcomes, lease extensions, releases): their cost
//! is the batch's whatever the planner's statistics say, and they cannot deadlock with each
//! other (issue 12, sections 2 and 5), nor hold each other up (issue 15).

use std::time::Duration;

use chrono::Utc;
use errand_core::{ClaimRequest, Finish, FinishAction, JobRow, LeaseRef, NewJob, Store};
use errand_postgres::testing::{scratch_store, statement};
use errand_postgres::PgStore;

fn job(i: usize) -> NewJob {
    NewJob {
        kind: "k".into(),
        queue: "q".into(),
        args: format!("{{\"i\":{i}}}"),
        priority: 0,
        max_attempts: 5,
        run_at: Utc::now() - chrono::TimeDelta::seconds(1),
        tags: vec![],
        unique_key: None,
        unique_states: Default::default(),
        unique_for_ms: None,
        backoff: None,
        timeout_ms: None,
        partition_key: None,
    }
}

async fn claim_all(store: &PgStore, n: usize) -> Vec<JobRow> {
    let mut rows = Vec::new();
    while rows.len() < n {
        let got = store
            .claim(&ClaimRequest {
                queue: "q".into(),
                limit: 5_000,
                worker_id: "w".into(),
                now: Utc::now(),
                lease: Duration::from_secs(600),
                held: None,
            })
            .await
            .unwrap();
        assert!(!got.is_empty(), "claimed {} of {n}", rows.len());
        rows.extend(got);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_and_extensions_look_rows_up_by_primary_key_whatever_the_statistics() {
    let store = scratch_store().await;
    let table = format!("\"{}\".jobs", store.schema());
    const N: usize = 20_000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(5_000) {
        store
            .insert(chunk.iter().map(|&i| job(i)).collect(), Utc::now())
            .await
            .unwrap();
    }
    // Statistics taken while nothing runs, kept while everything then runs: the planner
    // believes almost no row is `running`.
    sqlx::query(&format!(
        "ALTER TABLE {table} SET (autovacuum_enabled = false)"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(&format!("ANALYZE {table}"))
        .execute(store.pool())
        .await
        .unwrap();
    let rows = claim_all(&store, N).await;
    let batch: Vec<LeaseRef> = rows.iter().step_by(20).map(JobRow::lease_ref).collect();
    assert_eq!(batch.len(), 1_000);
    let ids: Vec<i64> = batch.iter().map(|l| l.id).collect();
    let attempts: Vec<i32> = batch.iter().map(|l| l.attempt).collect();
    let n = batch.len();
    for which in [
        "finish",
        "finish_lean",
        "finish_completions",
        "extend",
        "release",
    ] {
        let mut tx = store.pool().begin().await.unwrap();
        let explain = format!("EXPLAIN (ANALYZE, COSTS OFF) {}", statement(&store, which));
        let q = sqlx::query_scalar::<_, String>(&explain);
        let q = match which {
            "finish" | "finish_lean" => q
                .bind(&ids)
                .bind(&attempts)
                .bind(vec!["completed"; n])
                .bind(vec![0_i32; n])
                .bind(vec![None::<chrono::DateTime<Utc>>; n])
                .bind(vec![Some(Utc::now()); n])
                .bind(vec![None::<String>; n])
                .bind("errand_plan_test")
                .bind(vec![None::<String>; n]),
            "finish_completions" => q
                .bind(&ids)
                .bind(&attempts)
                .bind(vec![Some(Utc::now()); n])
                .bind(vec![None::<String>; n])
                .bind("errand_plan_test"),
            "extend" => q.bind(Utc::now()).bind(&ids).bind(&attempts),
            _ => q
                .bind(Utc::now())
                .bind(&ids)
                .bind(&attempts)
                .bind("errand_plan_test"),
        };
        let plan = q.fetch_all(&mut *tx).await.unwrap().join("\n");
        tx.rollback().await.unwrap();
        // Rows the executor looked at and threw away: a plan driven by the running rows
        // discards ~N × batch of them; a primary-key plan none beyond the batch's own rows
        // (the CTEs each read the batch once and filter it: the locked rows for workflow
        // steps to settle, the updated rows for completions with dependents and for each
        // notification — up to 8 × batch, still under the N running rows one bad scan
        // alone discards).
        let removed: u64 = plan
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Rows Removed by "))
            .filter_map(|l| l.split(": ").nth(1))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum();
        assert!(
            removed <= 8 * n as u64 && !plan.contains("jobs_lease"),
            "{which}: {removed} rows removed\n{plan}"
        );
        assert!(
            plan.contains("jobs_pkey"),
            "{which} should find rows by id\n{plan}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_lease_extensions_over_the_same_rows_never_deadlock() {
    let store = scratch_store().await;
    const JOBS: usize = 400;
    for round in 0..25 {
        store
            .insert((0..JOBS).map(job).collect(), Utc::now())
            .await
            .unwrap();
        let rows = claim_all(&store, JOBS).await;
        let mut leases: Vec<LeaseRef> = rows.iter().map(JobRow::lease_ref).collect();
        // The heartbeat extends every lease, in the order its map yields them; the
        // completer writes outcomes in the order jobs ended. Give them opposite orders.
        leases.sort_by_key(|l| l.id);
        let forward = leases.clone();
        let mut backward = leases.clone();
        backward.reverse();
        let heartbeat = {
            let store = store.clone();
            let backward = backward.clone();
            tokio::spawn(async move {
                for i in 0..6 {
                    let order = if i % 2 == 0 { &forward } else { &backward };
                    let until = Utc::now() + chrono::TimeDelta::seconds(600);
                    store.extend_leases(order, until).await?;
                }
                Ok::<_, errand_core::StoreError>(())
            })
        };
        let completer = {
            let store = store.clone();
            tokio::spawn(async move {
                for part in backward.chunks(40) {
                    let batch: Vec<Finish> = part
                        .iter()
                        .map(|&lease| Finish {
                            lease,
                            at: Utc::now(),
                            action: FinishAction::Complete,
                        })
                        .collect();
                    store.finish(&batch).await?;
                }
                Ok::<_, errand_core::StoreError>(())
            })
        };
        let (h, c) = tokio::join!(heartbeat, completer);
        h.unwrap()
            .unwrap_or_else(|e| panic!("round {round}: lease extension failed: {e}"));
        c.unwrap()
            .unwrap_or_else(|e| panic!("round {round}: completion failed: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_not_held_up_by_an_extension_waiting_on_a_locked_row() {
    let store = scratch_store().await;
    let table = format!("\"{}\".jobs", store.schema());
    store
        .insert((0..2).map(job).collect(), Utc::now())
        .await
        .unwrap();
    let mut leases: Vec<LeaseRef> = claim_all(&store, 2)
        .await
        .iter()
        .map(JobRow::lease_ref)
        .collect();
    leases.sort_by_key(|l| l.id);
    let (locked, other) = (leases[0], leases[1]);
    // Another transaction keeps the first job's row locked (an application's, say).
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query(&format!("SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE"))
        .bind(locked.id)
        .execute(&mut *holder)
        .await
        .unwrap();
    // The heartbeat extends both leases and waits on that row (having locked nothing, the
    // rows being locked in id order).
    let extension = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .extend_leases(
                    &[locked, other],
                    Utc::now() + chrono::TimeDelta::seconds(600),
                )
                .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE '%SET lease_expires_at = $1%'
               AND position($1 in query) > 0",
        )
        .bind(&table)
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the extension never waited on the locked row"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other job's outcome is written meanwhile, not after the transaction ends.
    let done = tokio::time::timeout(
        Duration::from_secs(5),
        store.finish(&[Finish {
            lease: other,
            at: Utc::now(),
            action: FinishAction::Complete,
        }]),
    )
    .await
    .expect("the outcome waited for the extension")
    .unwrap();
    assert_eq!(done, vec![other.id]);
    holder.rollback().await.unwrap();
    let extended = extension.await.unwrap().unwrap();
    assert_eq!(
        extended,
        vec![locked.id],
        "the completed job is no longer extended"
    );
}
