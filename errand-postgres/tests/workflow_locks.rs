//! Failures of workflow steps cancel what they reach in the trigger of migration 13: two
//! failures whose reaches overlap lock the steps they cancel in id order, so they wait for
//! each other instead of deadlocking (the database would abort one; the runtime would write
//! it again, a second later), and a step the first cancelled is not cancelled again.

use std::time::Duration;

use errand_core::{FinishAction, JobState, NewStep, Store};
use errand_postgres::testing::scratch_store;
use errand_testkit::helpers::workflow::{insert_wf, step, workflow};
use errand_testkit::helpers::{at, claim, error, finish};

async fn deadlocks(store: &errand_postgres::PgStore) -> i64 {
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_reaching_the_same_steps_cancel_each_once_without_deadlock() {
    let store = scratch_store().await;
    const PARENTS: usize = 8;
    const CHILDREN: usize = 1_000;
    let before = deadlocks(&store).await;
    for round in 0..3 {
        let id = format!("overlap-{round}");
        let names: Vec<String> = (0..PARENTS).map(|p| format!("p-{p}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut steps: Vec<NewStep> = refs.iter().map(|n| step(n, &[])).collect();
        // Every child waits for every parent, each named in another order: each failure's
        // reach is every child, found in whatever order the plan yields.
        for c in 0..CHILDREN {
            let mut deps = refs.clone();
            deps.rotate_left(c % PARENTS);
            steps.push(step(&format!("c-{c}"), &deps));
        }
        insert_wf(&store, workflow(&id, steps)).await;
        let parents = claim(&store, "wf", PARENTS as u32, at(1)).await;
        assert_eq!(parents.len(), PARENTS);
        let tasks: Vec<_> = parents
            .into_iter()
            .map(|row| {
                let store = store.clone();
                tokio::spawn(async move {
                    if row.id % 2 == 0 {
                        let f = finish(
                            &row,
                            at(2),
                            FinishAction::Discard {
                                error: error(&row, at(2), "broken"),
                            },
                        );
                        store.finish(&[f]).await.map(|_| ())
                    } else {
                        // A hand cancel: no outcome batch, only the trigger.
                        store.cancel(row.id, at(2)).await.map(|_| ())
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: a failure's outcome failed: {e}"));
        }
        let rec = store.workflow(&id).await.unwrap().unwrap();
        let cancelled = rec
            .steps
            .iter()
            .filter(|s| s.step.starts_with("c-") && s.job.state == JobState::Cancelled)
            .count();
        assert_eq!(cancelled, CHILDREN, "round {round}: every child cancelled");
        for s in rec.steps.iter().filter(|s| s.step.starts_with("c-")) {
            assert_eq!(
                s.job.errors.len(),
                1,
                "round {round}: {} cancelled once, by one failure: {:?}",
                s.step,
                s.job.errors
            );
        }
    }
    // The counter is the database's: other tests' deadlocks would show too; they have none.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(deadlocks(&store).await, before, "no deadlock detected");
}

/// A process that never claimed a step writes its outcome batches without the settling
/// part (`Sql::finish_lean`); should one end a step all the same (here: a second handle on
/// the schema completes a step the first claimed), migration 13's trigger settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_completed_by_a_process_that_claimed_none_still_releases_its_dependents() {
    let first = scratch_store().await;
    let ids = insert_wf(
        &first,
        workflow("lean", vec![step("a", &[]), step("b", &["a"])]),
    )
    .await;
    let row = claim(&first, "wf", 10, at(1)).await.remove(0);
    assert_eq!(row.id, ids[0].1);
    let second = errand_postgres::PgStore::builder()
        .pool(first.pool().clone())
        .schema(first.schema())
        .migrate(false)
        .open()
        .await
        .unwrap();
    second
        .finish(&[finish(&row, at(2), FinishAction::Complete)])
        .await
        .unwrap();
    let b = second.get(ids[1].1).await.unwrap().unwrap();
    assert_eq!(b.state, JobState::Available, "released by the trigger");
    let rec = second.workflow("lean").await.unwrap().unwrap();
    assert_eq!(rec.step("b").unwrap().waiting_on, 0);
    assert!(rec.step("b").unwrap().deps[0].settled);
}

/// Two failed dependencies of the same steps retried at once: every step is revived. Each
/// revive asks whether a step has another failed dependency; answered from a snapshot taken
/// before the other retry committed, a step was left cancelled by a dependency already
/// retried — for good, once that one completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_failed_dependencies_retried_at_once_revive_every_step() {
    let store = scratch_store().await;
    const CHILDREN: usize = 200;
    for round in 0..5 {
        let id = format!("revive-{round}");
        let mut steps: Vec<NewStep> = vec![step("p", &[]), step("q", &[])];
        for c in 0..CHILDREN {
            let deps: &[&str] = if c % 2 == 0 { &["p", "q"] } else { &["q", "p"] };
            steps.push(step(&format!("c-{c}"), deps));
        }
        // A queue per round: each round's clock starts again (a queue's claim floor would
        // step over jobs older than the last round's).
        let queue = format!("wf{round}");
        for s in &mut steps {
            s.job.queue = queue.clone();
        }
        let ids = insert_wf(&store, workflow(&id, steps)).await;
        let parents = claim(&store, &queue, 2, at(1)).await;
        assert_eq!(parents.len(), 2);
        for row in &parents {
            let f = finish(
                row,
                at(2),
                FinishAction::Discard {
                    error: error(row, at(2), "broken"),
                },
            );
            store.finish(&[f]).await.unwrap();
        }
        let (p, q) = (ids[0].1, ids[1].1);
        let retries: Vec<_> = [p, q]
            .into_iter()
            .map(|job| {
                let store = store.clone();
                tokio::spawn(async move { store.retry_now(job, at(3)).await })
            })
            .collect();
        for r in retries {
            // A deadlock between the two is the database's to break: the operator's retry
            // says so and is run again.
            if let Err(e) = r.await.unwrap() {
                assert!(e.to_string().contains("deadlock"), "round {round}: {e}");
            }
        }
        for job in [p, q] {
            if store.get(job).await.unwrap().unwrap().state != JobState::Available {
                store.retry_now(job, at(4)).await.unwrap();
            }
        }
        let rec = store.workflow(&id).await.unwrap().unwrap();
        let stuck: Vec<_> = rec
            .steps
            .iter()
            .filter(|s| s.step.starts_with("c-") && s.job.state != JobState::Pending)
            .map(|s| (s.step.clone(), s.job.state, s.cancelled_by))
            .collect();
        assert!(
            stuck.is_empty(),
            "round {round}: {} of {CHILDREN} not revived, e.g. {:?}",
            stuck.len(),
            stuck.first()
        );
        // Both dependencies complete: every step is released.
        let rows = claim(&store, &queue, 10, at(5)).await;
        assert_eq!(rows.len(), 2, "round {round}: p and q run again");
        let batch: Vec<_> = rows
            .iter()
            .map(|r| finish(r, at(6), FinishAction::Complete))
            .collect();
        store.finish(&batch).await.unwrap();
        let rec = store.workflow(&id).await.unwrap().unwrap();
        let released = rec
            .steps
            .iter()
            .filter(|s| s.step.starts_with("c-") && s.job.state == JobState::Available)
            .count();
        assert_eq!(released, CHILDREN, "round {round}");
    }
}
