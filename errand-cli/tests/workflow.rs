//! Workflows across processes: a step with 50 parents completed at once by 4 worker
//! processes is released, and runs, exactly once — on SQLite and on Postgres. (The memory
//! store has no processes; its race is the conformance case
//! `workflow::racing_parents_release_their_step_once`, which every store runs.)

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use errand::{Client, Dep, JobState, Workflow};
use errand_cli::chaos::LedgerJob;

const WORKFLOWS: usize = 10;
const PARENTS: usize = 50;

async fn deadlocks(db: &Db) -> i64 {
    match db.backend.as_postgres() {
        Some(pg) => sqlx::query_scalar(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(pg.pool())
        .await
        .unwrap(),
        None => 0,
    }
}

async fn fifty_parents_four_processes(db: Db) {
    let ledger = db.ledger().await;
    let deadlocks_before = deadlocks(&db).await;
    let client = Client::new(db.store());
    let names: Vec<String> = (0..PARENTS).map(|i| format!("p-{i}")).collect();
    let mut ids = Vec::new();
    for _ in 0..WORKFLOWS {
        let wf = Workflow::new("race")
            .add_each(
                "p",
                (0..PARENTS).map(|_| LedgerJob { work_ms: 20 }),
                Vec::<Dep>::new(),
            )
            .add_after("child", LedgerJob { work_ms: 0 }, names.iter());
        ids.push(client.enqueue_workflow(wf).await.unwrap().id);
    }
    db.run_until_done(4, Duration::from_secs(120)).await;
    // Outcome batches ending parents of the same steps lock those steps in id order first
    // (errand-postgres `Sql::finish`); without that, 10 workflows deadlocked a few times a run.
    assert_eq!(
        deadlocks(&db).await,
        deadlocks_before,
        "deadlocks while settling steps"
    );
    let runs = ledger.runs().await.unwrap();
    // job → (start, end) of its run, by this machine's clock (each ran once: asserted below).
    let times: HashMap<i64, (i64, i64)> = ledger
        .times()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _, start, end)| (id, (start, end)))
        .collect();
    let mut per_job: HashMap<i64, u32> = HashMap::new();
    let mut pid_of: HashMap<i64, i64> = HashMap::new();
    for (id, _, pid) in &runs {
        *per_job.entry(*id).or_default() += 1;
        pid_of.insert(*id, *pid);
    }
    assert_eq!(runs.len(), WORKFLOWS * (PARENTS + 1), "every step ran once");
    assert!(per_job.values().all(|n| *n == 1), "a step ran twice");
    let mut spread = 0;
    for id in &ids {
        let wf = client.workflow(id).await.unwrap().expect("the workflow");
        assert!(
            wf.steps.iter().all(|s| s.job.state == JobState::Completed),
            "{id}"
        );
        let child = wf.step("child").expect("the child");
        assert_eq!(child.job.attempt, 1, "claimed once");
        assert_eq!(child.waiting_on, 0);
        // The child's run began after every parent's run ended, by one clock (the release
        // is in the commit of the last parent's completion, after its run ended).
        let last_parent_end = wf
            .steps
            .iter()
            .filter(|s| s.step != "child")
            .map(|s| times[&s.job.id].1)
            .max()
            .unwrap();
        let started = times[&child.job.id].0;
        assert!(
            last_parent_end > 0 && started >= last_parent_end,
            "{id}: child started at {started} µs before its last parent's run ended at {last_parent_end} µs"
        );
        let pids: std::collections::HashSet<i64> = wf
            .steps
            .iter()
            .filter(|s| s.step != "child")
            .filter_map(|s| pid_of.get(&s.job.id).copied())
            .collect();
        spread = spread.max(pids.len());
    }
    assert!(
        spread >= 2,
        "parents of one step were completed by several processes"
    );
    eprintln!(
        "{WORKFLOWS} workflows of {PARENTS} parents + 1 child on 4 processes: every child \
         released and run once; parents of one child completed by up to {spread} processes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fifty_parents_completed_by_four_processes_release_once() {
    fifty_parents_four_processes(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fifty_parents_completed_by_four_processes_release_once() {
    fifty_parents_four_processes(Db::postgres().await).await;
}
