//! Workflows: steps that wait for their dependencies, released exactly once as they end;
//! failures cancel dependents, a hand retry revives them; cancelling a workflow.

use std::sync::Arc;
use std::time::Duration;

use errand_core::{
    DepOutput, FinishAction, JobId, JobRow, JobState, ListFilter, NewStep, Store, StoreError,
    WorkflowError,
};

use crate::helpers::workflow::{holds, insert_wf, step, workflow};
use crate::helpers::*;

fn id_of(ids: &[(String, JobId)], name: &str) -> JobId {
    ids.iter()
        .find(|(n, _)| n == name)
        .expect("a step of the workflow")
        .1
}

/// Claims the jobs of queue "wf" and returns those of the named steps (asserting they are
/// exactly what is available).
async fn claim_steps<S: Store>(store: &S, want: &[JobId], now_secs: i64) -> Vec<JobRow> {
    let rows = claim(store, "wf", 100, at(now_secs)).await;
    let mut got: Vec<JobId> = rows.iter().map(|r| r.id).collect();
    got.sort();
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(got, want, "the available steps");
    rows
}

async fn complete<S: Store>(store: &S, rows: &[JobRow], secs: i64) {
    let batch: Vec<_> = rows
        .iter()
        .map(|r| finish(r, at(secs), FinishAction::Complete))
        .collect();
    assert_eq!(store.finish(&batch).await.unwrap().len(), rows.len());
}

async fn discard<S: Store>(store: &S, row: &JobRow, secs: i64) {
    let f = finish(
        row,
        at(secs),
        FinishAction::Discard {
            error: error(row, at(secs), "broken"),
        },
    );
    assert_eq!(store.finish(&[f]).await.unwrap().len(), 1);
}

/// A diamond: `c` waits in `pending` (not claimable, counted as pending) until both `a`
/// and `b` completed, then becomes available once.
pub async fn a_step_waits_for_its_dependencies<S: Store>(store: S) {
    let ids = insert_wf(
        &store,
        workflow(
            "w1",
            vec![step("c", &["a", "b"]), step("a", &[]), step("b", &[])],
        ),
    )
    .await;
    let (a, b, c) = (id_of(&ids, "a"), id_of(&ids, "b"), id_of(&ids, "c"));
    assert_eq!(get(&store, c).await.state, JobState::Pending);
    let pending = ListFilter::new().state(JobState::Pending);
    assert_eq!(store.count(&pending).await.unwrap(), 1);
    let available = ListFilter::new().state(JobState::Available);
    assert_eq!(store.count(&available).await.unwrap(), 2);
    let rows = claim_steps(&store, &[a, b], 1).await;
    let ra = rows.iter().find(|r| r.id == a).unwrap().clone();
    let rb = rows.iter().find(|r| r.id == b).unwrap().clone();
    complete(&store, &[ra], 2).await;
    assert_eq!(
        get(&store, c).await.state,
        JobState::Pending,
        "one parent left"
    );
    assert!(claim(&store, "wf", 10, at(3)).await.is_empty());
    complete(&store, &[rb], 3).await;
    let rc = claim_steps(&store, &[c], 4).await;
    assert_eq!(rc[0].attempt, 1);
    complete(&store, &rc, 5).await;
    let rec = store.workflow("w1").await.unwrap().expect("the workflow");
    assert_eq!(rec.name, "w1 name");
    assert_eq!(rec.steps.len(), 3);
    let sc = rec.steps.iter().find(|s| s.step == "c").unwrap();
    assert_eq!(sc.waiting_on, 0);
    let mut parents: Vec<_> = sc
        .deps
        .iter()
        .map(|d| (d.step.as_str(), d.settled))
        .collect();
    parents.sort();
    assert_eq!(parents, vec![("a", true), ("b", true)]);
    assert!(rec.steps.iter().all(|s| s.job.state == JobState::Completed));
    assert_eq!(
        store.job_step(c).await.unwrap(),
        Some(("w1".into(), "c".into()))
    );
    assert_eq!(store.job_step(999_999).await.unwrap(), None);
    assert!(store.workflow("nope").await.unwrap().is_none());
}

/// Two parents of one step completed in one outcome batch release it once.
pub async fn parents_ending_in_one_batch_release_once<S: Store>(store: S) {
    let ids = insert_wf(
        &store,
        workflow(
            "w2",
            vec![step("a", &[]), step("b", &[]), step("c", &["a", "b"])],
        ),
    )
    .await;
    let rows = claim_steps(&store, &[id_of(&ids, "a"), id_of(&ids, "b")], 1).await;
    complete(&store, &rows, 2).await;
    let c = id_of(&ids, "c");
    let rc = claim_steps(&store, &[c], 3).await;
    assert_eq!(rc.len(), 1);
    let rec = store.workflow("w2").await.unwrap().unwrap();
    assert_eq!(
        rec.steps.iter().find(|s| s.step == "c").unwrap().waiting_on,
        0
    );
}

/// A step waiting for a dependency whose run time is later becomes `scheduled`, not
/// available, when released; a dependency's result is read back by its dependents.
pub async fn a_released_step_keeps_its_run_time_and_reads_outputs<S: Store>(store: S) {
    let mut later = step("later", &["a"]);
    later.job.run_at = at(600);
    let ids = insert_wf(&store, workflow("w3", vec![step("a", &[]), later])).await;
    let ra = claim_steps(&store, &[id_of(&ids, "a")], 1).await.remove(0);
    let f = finish(
        &ra,
        at(2),
        FinishAction::CompleteWith {
            result: r#"{"pages":3}"#.into(),
        },
    );
    store.finish(&[f]).await.unwrap();
    let l = id_of(&ids, "later");
    assert_eq!(get(&store, l).await.state, JobState::Scheduled);
    let outs = store.dependency_outputs(l).await.unwrap();
    assert_eq!(outs.len(), 1);
    let DepOutput {
        step,
        id,
        kind,
        state,
        result,
    } = &outs[0];
    assert_eq!(
        (step.as_str(), *id, kind.as_str(), *state),
        ("a", ra.id, "a", JobState::Completed)
    );
    // Compared as JSON: Postgres keeps results as jsonb, which may space them differently.
    assert_eq!(
        json(result.as_deref().expect("a result")),
        json(r#"{"pages":3}"#)
    );
    store.promote_due(at(601), 10).await.unwrap();
    claim_steps(&store, &[l], 602).await;
}

/// A discarded dependency cancels its dependents with the reason recorded, through the
/// whole chain below them; a dependent on an `ignore_failure` edge runs anyway.
pub async fn a_failed_dependency_cancels_its_dependents<S: Store>(store: S) {
    let ids = insert_wf(
        &store,
        workflow(
            "w4",
            vec![
                step("a", &[]),
                step("b", &["a"]),
                step("c", &["b"]),
                step("d", &["c"]),
                step("tolerant", &["a?"]),
                step("after-c", &["c?"]),
            ],
        ),
    )
    .await;
    let a = id_of(&ids, "a");
    let ra = claim_steps(&store, &[a], 1).await.remove(0);
    discard(&store, &ra, 2).await;
    let b = get(&store, id_of(&ids, "b")).await;
    assert_eq!(b.state, JobState::Cancelled);
    assert_eq!(b.finalized_at, Some(at(2)));
    let msg = &b.errors.last().expect("a reason").message;
    assert!(
        msg.contains("dependency 'a'")
            && msg.contains(&format!("job {a}"))
            && msg.contains("discarded"),
        "reason: {msg}"
    );
    for name in ["c", "d"] {
        let r = get(&store, id_of(&ids, name)).await;
        assert_eq!(r.state, JobState::Cancelled, "{name}");
        assert!(r.errors.last().unwrap().message.contains("ended cancelled"));
    }
    let rec = store.workflow("w4").await.unwrap().unwrap();
    let by = |n: &str| rec.steps.iter().find(|s| s.step == n).unwrap().clone();
    assert_eq!(by("b").cancelled_by, Some(a));
    assert_eq!(by("c").cancelled_by, Some(id_of(&ids, "b")));
    // `tolerant` waited on `a` with ignore_failure; `after-c` on `c`, cancelled by the
    // cascade: both run.
    claim_steps(
        &store,
        &[id_of(&ids, "tolerant"), id_of(&ids, "after-c")],
        3,
    )
    .await;
}

/// Retrying the failed dependency by hand revives the steps its failure cancelled; they
/// then run as their dependencies complete.
pub async fn retrying_a_failed_dependency_revives_its_dependents<S: Store>(store: S) {
    let ids = insert_wf(
        &store,
        workflow(
            "w5",
            vec![step("a", &[]), step("b", &["a"]), step("c", &["b"])],
        ),
    )
    .await;
    let (a, b, c) = (id_of(&ids, "a"), id_of(&ids, "b"), id_of(&ids, "c"));
    let ra = claim_steps(&store, &[a], 1).await.remove(0);
    discard(&store, &ra, 2).await;
    assert_eq!(get(&store, c).await.state, JobState::Cancelled);
    let back = store.retry_now(a, at(3)).await.unwrap().unwrap();
    assert_eq!(back.state, JobState::Available);
    for id in [b, c] {
        let r = get(&store, id).await;
        assert_eq!(r.state, JobState::Pending, "job {id} revived");
        assert_eq!(r.finalized_at, None);
    }
    let rec = store.workflow("w5").await.unwrap().unwrap();
    assert!(rec.steps.iter().all(|s| s.cancelled_by.is_none()));
    let ra = claim_steps(&store, &[a], 4).await;
    complete(&store, &ra, 5).await;
    let rb = claim_steps(&store, &[b], 6).await;
    complete(&store, &rb, 7).await;
    claim_steps(&store, &[c], 8).await;
}

/// A step waiting on two failed dependencies is revived only once both were retried.
pub async fn a_step_with_two_failed_dependencies_waits_for_both_retries<S: Store>(store: S) {
    let ids = insert_wf(
        &store,
        workflow(
            "w6",
            vec![step("a", &[]), step("x", &[]), step("d", &["a", "x"])],
        ),
    )
    .await;
    let (a, x, d) = (id_of(&ids, "a"), id_of(&ids, "x"), id_of(&ids, "d"));
    let rows = claim_steps(&store, &[a, x], 1).await;
    for r in &rows {
        discard(&store, r, 2).await;
    }
    assert_eq!(get(&store, d).await.state, JobState::Cancelled);
    let first = store.workflow("w6").await.unwrap().unwrap();
    let by = first
        .steps
        .iter()
        .find(|s| s.step == "d")
        .unwrap()
        .cancelled_by
        .unwrap();
    let other = if by == a { x } else { a };
    store.retry_now(by, at(3)).await.unwrap();
    let rec = store.workflow("w6").await.unwrap().unwrap();
    let sd = rec.steps.iter().find(|s| s.step == "d").unwrap();
    assert_eq!(
        sd.job.state,
        JobState::Cancelled,
        "the other dependency still failed"
    );
    assert_eq!(sd.cancelled_by, Some(other));
    store.retry_now(other, at(4)).await.unwrap();
    assert_eq!(get(&store, d).await.state, JobState::Pending);
    let rows = claim_steps(&store, &[a, x], 5).await;
    complete(&store, &rows, 6).await;
    claim_steps(&store, &[d], 7).await;
}

/// A pending step cannot be retried into running early; a cancelled step retried by hand
/// while a dependency still runs goes back to waiting.
pub async fn a_hand_retry_never_skips_dependencies<S: Store>(store: S) {
    let ids = insert_wf(
        &store,
        workflow("w7", vec![step("a", &[]), step("b", &["a"])]),
    )
    .await;
    let (a, b) = (id_of(&ids, "a"), id_of(&ids, "b"));
    let same = store.retry_now(b, at(1)).await.unwrap().unwrap();
    assert_eq!(same.state, JobState::Pending);
    assert!(matches!(
        store.cancel(b, at(2)).await.unwrap(),
        errand_core::CancelResult::Cancelled(_)
    ));
    let back = store.retry_now(b, at(3)).await.unwrap().unwrap();
    assert_eq!(back.state, JobState::Pending, "still waits for a");
    let ra = claim_steps(&store, &[a], 4).await;
    complete(&store, &ra, 5).await;
    claim_steps(&store, &[b], 6).await;
}

/// Cancelling a workflow cancels every step not final (a running step's outcome is then
/// ignored) and leaves finished ones as they are.
pub async fn cancelling_a_workflow_cancels_every_unfinished_step<S: Store>(store: S) {
    let ids = insert_wf(
        &store,
        workflow(
            "w8",
            vec![
                step("done", &[]),
                step("running", &[]),
                step("waiting", &["running"]),
                step("later", &["waiting"]),
            ],
        ),
    )
    .await;
    let rows = claim_steps(&store, &[id_of(&ids, "done"), id_of(&ids, "running")], 1).await;
    let (done, running): (Vec<_>, Vec<_>) =
        rows.into_iter().partition(|r| r.id == id_of(&ids, "done"));
    complete(&store, &done, 2).await;
    assert_eq!(store.cancel_workflow("w8", at(3)).await.unwrap(), 3);
    assert!(store
        .finish(&[finish(&running[0], at(4), FinishAction::Complete)])
        .await
        .unwrap()
        .is_empty());
    let rec = store.workflow("w8").await.unwrap().unwrap();
    for s in &rec.steps {
        let want = if s.step == "done" {
            JobState::Completed
        } else {
            JobState::Cancelled
        };
        assert_eq!(s.job.state, want, "{}", s.step);
    }
    assert_eq!(store.cancel_workflow("w8", at(5)).await.unwrap(), 0);
    assert_eq!(store.cancel_workflow("missing", at(5)).await.unwrap(), 0);
    let summary = store.workflows(10, None).await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].id, "w8");
    assert_eq!(
        summary[0].counts,
        vec![(JobState::Completed, 1), (JobState::Cancelled, 3)]
    );
    assert!(summary[0].is_finished());
}

/// A running step adds steps to its workflow: they wait for it, and a step added with them
/// waits for all of them (fan-out, fan-in). Added after a dependency completed, a step is
/// available at once.
pub async fn a_running_step_fans_out_and_in<S: Store>(store: S) {
    let ids = insert_wf(&store, workflow("w9", vec![step("plan", &[])])).await;
    let plan = id_of(&ids, "plan");
    let rp = claim_steps(&store, &[plan], 1).await;
    let mut steps: Vec<NewStep> = (0..3)
        .map(|i| step(&format!("fetch-{i}"), &["plan"]))
        .collect();
    steps.push(step("sum", &["fetch-0", "fetch-1", "fetch-2"]));
    let added = insert_wf(&store, workflow("w9", steps)).await;
    let fetches: Vec<JobId> = (0..3)
        .map(|i| id_of(&added, &format!("fetch-{i}")))
        .collect();
    assert!(
        claim(&store, "wf", 10, at(2)).await.is_empty(),
        "they wait for plan"
    );
    complete(&store, &rp, 3).await;
    let rows = claim_steps(&store, &fetches, 4).await;
    complete(&store, &rows, 5).await;
    claim_steps(&store, &[id_of(&added, "sum")], 6).await;
    let late = insert_wf(&store, workflow("w9", vec![step("late", &["plan"])])).await;
    assert_eq!(
        get(&store, id_of(&late, "late")).await.state,
        JobState::Available
    );
    assert_eq!(store.workflow("w9").await.unwrap().unwrap().steps.len(), 6);
}

/// Bad workflows are refused before anything is written: a cycle, a dependency on no
/// step, a step name taken, steps added to a workflow that does not exist.
pub async fn bad_workflows_write_nothing<S: Store>(store: S) {
    let refused = |r: Result<Vec<JobId>, StoreError>| match r {
        Err(StoreError::Workflow(e)) => e,
        other => panic!("expected a workflow error, got {other:?}"),
    };
    let e = refused(
        store
            .insert_workflow(
                &workflow("b1", vec![step("a", &["b"]), step("b", &["a"])]),
                t0(),
            )
            .await,
    );
    assert!(matches!(e, WorkflowError::Cycle { .. }), "{e}");
    let e = refused(
        store
            .insert_workflow(
                &workflow("b2", vec![step("a", &[]), step("b", &["zz"])]),
                t0(),
            )
            .await,
    );
    assert!(matches!(e, WorkflowError::NoWorkflow(_)), "{e}");
    insert_wf(&store, workflow("b3", vec![step("a", &[])])).await;
    let e = refused(
        store
            .insert_workflow(
                &workflow("b3", vec![step("x", &[]), step("y", &["zz"])]),
                t0(),
            )
            .await,
    );
    assert!(matches!(e, WorkflowError::UnknownStep { .. }), "{e}");
    let e = refused(
        store
            .insert_workflow(&workflow("b3", vec![step("x", &[]), step("a", &[])]), t0())
            .await,
    );
    assert!(matches!(e, WorkflowError::StepExists { .. }), "{e}");
    assert_eq!(
        store.count(&ListFilter::new()).await.unwrap(),
        1,
        "only b3's step"
    );
    assert!(store.workflow("b1").await.unwrap().is_none());
}

/// A step made available by its dependency's completion wakes its queue's producers.
pub async fn a_released_step_wakes_its_queue<S: Store>(store: S) {
    let ids = insert_wf(
        &store,
        workflow("w10", vec![step("a", &[]), step("b", &["a"])]),
    )
    .await;
    let ra = claim_steps(&store, &[id_of(&ids, "a")], 1).await;
    let signal = store.signals().get("wf");
    let waiter = tokio::spawn(async move { signal.notified().await });
    tokio::task::yield_now().await;
    complete(&store, &ra, 2).await;
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the release did not wake the queue within 5 s")
        .unwrap();
}

/// 50 parents of one step completed at once by 8 tasks, each its own outcome call: the
/// step is released exactly once, with nothing left to wait for.
pub async fn racing_parents_release_their_step_once<S: Store + Clone>(store: S) {
    let mut steps: Vec<NewStep> = (0..50).map(|i| step(&format!("p{i}"), &[])).collect();
    let names: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    steps.push(step("child", &refs));
    let ids = insert_wf(&store, workflow("race", steps)).await;
    let child = id_of(&ids, "child");
    let parents = claim(&store, "wf", 100, at(1)).await;
    assert_eq!(parents.len(), 50);
    let parents = Arc::new(parents);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (store, parents) = (store.clone(), parents.clone());
        tasks.push(tokio::spawn(async move {
            for r in parents.iter().skip(t).step_by(8) {
                let f = finish(r, at(2), FinishAction::Complete);
                assert_eq!(store.finish(&[f]).await.unwrap().len(), 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = claim(&store, "wf", 100, at(3)).await;
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![child]);
    let rec = store.workflow("race").await.unwrap().unwrap();
    let c = rec.steps.iter().find(|s| s.step == "child").unwrap();
    assert_eq!(c.waiting_on, 0);
    assert!(c.deps.iter().all(|d| d.settled));
}

/// Pruning finished steps takes their edges with them, and a workflow whose steps are all
/// gone is gone too; one with steps left stays.
pub async fn pruning_steps_removes_their_edges_and_emptied_workflows<S: Store>(store: S) {
    let done = insert_wf(
        &store,
        workflow("p1", vec![step("a", &[]), step("b", &["a"])]),
    )
    .await;
    let kept = insert_wf(
        &store,
        workflow("p2", vec![step("x", &[]), step("y", &["x"])]),
    )
    .await;
    let first = claim_steps(&store, &[id_of(&done, "a"), id_of(&kept, "x")], 1).await;
    complete(&store, &first, 2).await;
    let second = claim_steps(&store, &[id_of(&done, "b"), id_of(&kept, "y")], 3).await;
    let (b, y): (Vec<_>, Vec<_>) = second.into_iter().partition(|r| r.id == id_of(&done, "b"));
    complete(&store, &b, 4).await;
    let pruned = store.prune(JobState::Completed, at(5), 100).await.unwrap();
    assert_eq!(pruned, 3, "a, b and x");
    assert!(
        store.workflow("p1").await.unwrap().is_none(),
        "emptied: gone"
    );
    let left = store.workflow("p2").await.unwrap().expect("a step left");
    assert_eq!(left.steps.len(), 1);
    assert!(
        left.steps[0].deps.is_empty(),
        "the pruned parent's edge went with it"
    );
    let listed: Vec<String> = store
        .workflows(10, None)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(listed, vec!["p2".to_owned()]);
    complete(&store, &y, 6).await;
}

/// Steps a running step adds may hold back a step declared up front (`holds`): it waits
/// for them as well. One that fails cancels it and what follows it (a retry revives them),
/// unless it is held with `ignore_failure`; a step no longer pending cannot be held, and a
/// new step depending on a step that has not started cannot hold one.
pub async fn new_steps_hold_back_a_pending_step<S: Store>(store: S) {
    let ids = insert_wf(
        &store,
        workflow(
            "w12",
            vec![
                step("discover", &[]),
                step("sum", &["discover"]),
                step("report", &["sum"]),
                step("done", &["discover?"]),
            ],
        ),
    )
    .await;
    let [discover, sum, report, done] =
        ["discover", "sum", "report", "done"].map(|n| id_of(&ids, n));
    let rd = claim_steps(&store, &[discover], 1).await;
    let mut more = workflow(
        "w12",
        vec![step("f-0", &["discover"]), step("f-1", &["discover"])],
    );
    more.holds = holds(&["sum", "done?"]);
    let added = insert_wf(&store, more).await;
    let (f0, f1) = (id_of(&added, "f-0"), id_of(&added, "f-1"));
    let rec = store.workflow("w12").await.unwrap().unwrap();
    assert_eq!(rec.step("sum").unwrap().waiting_on, 3);
    assert_eq!(rec.step("done").unwrap().waiting_on, 3);
    let sum_deps: Vec<&str> = rec
        .step("sum")
        .unwrap()
        .deps
        .iter()
        .map(|d| d.step.as_str())
        .collect();
    assert_eq!(sum_deps, vec!["discover", "f-0", "f-1"]);
    complete(&store, &rd, 2).await;
    let rows = claim_steps(&store, &[f0, f1], 3).await;
    for id in [sum, done] {
        assert_eq!(
            get(&store, id).await.state,
            JobState::Pending,
            "job {id} waits"
        );
    }
    let (r0, r1) = match rows[0].id == f0 {
        true => (rows[0].clone(), rows[1].clone()),
        false => (rows[1].clone(), rows[0].clone()),
    };
    discard(&store, &r0, 4).await;
    let s = store.workflow("w12").await.unwrap().unwrap();
    assert_eq!(s.step("sum").unwrap().job.state, JobState::Cancelled);
    assert_eq!(s.step("sum").unwrap().cancelled_by, Some(f0));
    assert_eq!(s.step("report").unwrap().job.state, JobState::Cancelled);
    assert_eq!(
        s.step("done").unwrap().job.state,
        JobState::Pending,
        "held with ignore_failure"
    );
    store.retry_now(f0, at(5)).await.unwrap();
    for id in [sum, report] {
        assert_eq!(
            get(&store, id).await.state,
            JobState::Pending,
            "job {id} revived"
        );
    }
    let r0 = claim_steps(&store, &[f0], 6).await;
    complete(&store, &[r0[0].clone(), r1], 7).await;
    claim_steps(&store, &[sum, done], 8).await;

    let refused = |r: Result<Vec<JobId>, StoreError>| match r {
        Err(StoreError::Workflow(e)) => e,
        other => panic!("expected a workflow error, got {other:?}"),
    };
    let before = store.count(&ListFilter::new()).await.unwrap();
    let mut late = workflow("w12", vec![step("g", &["discover"])]);
    late.holds = holds(&["sum"]);
    let e = refused(store.insert_workflow(&late, at(9)).await);
    assert!(
        matches!(
            e,
            WorkflowError::NotPending {
                state: JobState::Running,
                ..
            }
        ),
        "{e}"
    );
    let mut loop_back = workflow("w12", vec![step("g", &["report"])]);
    loop_back.holds = holds(&["report"]);
    let e = refused(store.insert_workflow(&loop_back, at(9)).await);
    assert!(matches!(e, WorkflowError::HoldAfterWaiting { .. }), "{e}");
    let mut nowhere = workflow("w12", vec![step("g", &["discover"])]);
    nowhere.holds = holds(&["nope"]);
    let e = refused(store.insert_workflow(&nowhere, at(9)).await);
    assert!(matches!(e, WorkflowError::UnknownHold { .. }), "{e}");
    assert_eq!(
        store.count(&ListFilter::new()).await.unwrap(),
        before,
        "nothing written"
    );
}

/// A new step born cancelled (its dependency had failed) cancels the step it holds back,
/// and that step's dependents; retrying the failed dependency revives all of them.
pub async fn a_held_step_is_cancelled_by_a_new_step_born_cancelled<S: Store>(store: S) {
    let ids = insert_wf(
        &store,
        workflow(
            "w13",
            vec![
                step("a", &[]),
                step("x", &[]),
                step("sum", &["a"]),
                step("after", &["sum"]),
            ],
        ),
    )
    .await;
    let [a, x, sum, after] = ["a", "x", "sum", "after"].map(|n| id_of(&ids, n));
    let rows = claim_steps(&store, &[a, x], 1).await;
    let ra: Vec<JobRow> = rows.iter().filter(|r| r.id == a).cloned().collect();
    discard(&store, rows.iter().find(|r| r.id == x).unwrap(), 2).await;
    let mut more = workflow("w13", vec![step("y", &["x"])]);
    more.holds = holds(&["sum"]);
    let added = insert_wf(&store, more).await;
    let y = id_of(&added, "y");
    let rec = store.workflow("w13").await.unwrap().unwrap();
    assert_eq!(rec.step("y").unwrap().job.state, JobState::Cancelled);
    let s = rec.step("sum").unwrap();
    assert_eq!(
        (s.job.state, s.cancelled_by),
        (JobState::Cancelled, Some(y))
    );
    assert!(
        s.job.errors.iter().any(|e| e.message.contains("'y'")),
        "the reason names the step: {:?}",
        s.job.errors
    );
    assert_eq!(rec.step("after").unwrap().job.state, JobState::Cancelled);
    assert_eq!(rec.step("after").unwrap().cancelled_by, Some(sum));
    store.retry_now(x, at(3)).await.unwrap();
    let rec = store.workflow("w13").await.unwrap().unwrap();
    for name in ["y", "sum", "after"] {
        let s = rec.step(name).unwrap();
        assert_eq!(
            (s.job.state, s.cancelled_by),
            (JobState::Pending, None),
            "{name} revived"
        );
    }
    let rx = claim_steps(&store, &[x], 4).await;
    complete(&store, &rx, 5).await;
    let ry = claim_steps(&store, &[y], 6).await;
    complete(&store, &ry, 7).await;
    assert_eq!(
        get(&store, sum).await.state,
        JobState::Pending,
        "still waits for a"
    );
    complete(&store, &ra, 8).await;
    let rs = claim_steps(&store, &[sum], 9).await;
    complete(&store, &rs, 10).await;
    claim_steps(&store, &[after], 11).await;
}

/// A dependency that completed has done its part for good: retried by hand and then
/// discarded, it neither cancels its dependents nor keeps one that another failure
/// cancelled from being revived, and its completion is not counted twice.
pub async fn a_completed_dependency_retried_and_failed_holds_nothing_back<S: Store>(store: S) {
    let ids = insert_wf(
        &store,
        workflow(
            "w14",
            vec![step("a", &[]), step("q", &[]), step("c", &["a", "q"])],
        ),
    )
    .await;
    let [a, q, c] = ["a", "q", "c"].map(|n| id_of(&ids, n));
    let rows = claim_steps(&store, &[a, q], 1).await;
    let (ra, rq) = match rows[0].id == a {
        true => (rows[0].clone(), rows[1].clone()),
        false => (rows[1].clone(), rows[0].clone()),
    };
    complete(&store, &[ra], 2).await;
    discard(&store, &rq, 3).await;
    assert_eq!(get(&store, c).await.state, JobState::Cancelled);
    let back = store.retry_now(a, at(4)).await.unwrap().unwrap();
    assert_eq!(back.state, JobState::Available);
    let ra = claim_steps(&store, &[a], 5).await.remove(0);
    discard(&store, &ra, 6).await;
    let rec = store.workflow("w14").await.unwrap().unwrap();
    let sc = rec.step("c").unwrap();
    assert_eq!(sc.cancelled_by, Some(q), "a's failure cancels nothing");
    let edge = sc.deps.iter().find(|d| d.parent == a).unwrap();
    assert!(edge.settled, "a's completion settled its edge for good");
    store.retry_now(q, at(7)).await.unwrap();
    let rec = store.workflow("w14").await.unwrap().unwrap();
    let sc = rec.step("c").unwrap();
    assert_eq!(
        (sc.job.state, sc.cancelled_by, sc.waiting_on),
        (JobState::Pending, None, 1),
        "revived, waiting for q only"
    );
    let rq = claim_steps(&store, &[q], 8).await;
    complete(&store, &rq, 9).await;
    claim_steps(&store, &[c], 10).await;
}

/// Deleting a step that has not ended ends it for its dependents as a cancellation would:
/// they are cancelled (released, on `ignore_failure` edges), and one retried by hand runs
/// without it. Deleting a step that completed changes nothing for its dependents.
pub async fn deleting_a_step_ends_it_for_its_dependents<S: Store>(store: S) {
    // A completed step deleted: its dependents were released already and stay so.
    let ids = insert_wf(
        &store,
        workflow("w16", vec![step("x", &[]), step("y", &["x"])]),
    )
    .await;
    let (x, y) = (id_of(&ids, "x"), id_of(&ids, "y"));
    let rx = claim_steps(&store, &[x], 1).await;
    complete(&store, &rx, 2).await;
    store.delete(x).await.unwrap();
    let rec = store.workflow("w16").await.unwrap().unwrap();
    let sy = rec.step("y").unwrap();
    assert_eq!((sy.job.state, sy.waiting_on), (JobState::Available, 0));
    claim_steps(&store, &[y], 3).await;

    let ids = insert_wf(
        &store,
        workflow(
            "w15",
            vec![
                step("a", &[]),
                step("b", &["a"]),
                step("c", &["a?"]),
                step("d", &["b"]),
            ],
        ),
    )
    .await;
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| id_of(&ids, n));
    assert!(matches!(
        store.delete(a).await.unwrap(),
        errand_core::DeleteResult::Deleted(_)
    ));
    let rec = store.workflow("w15").await.unwrap().unwrap();
    assert_eq!(rec.steps.len(), 3);
    let sb = rec.step("b").unwrap();
    assert_eq!(
        (sb.job.state, sb.cancelled_by),
        (JobState::Cancelled, Some(a))
    );
    assert!(
        sb.job.errors.iter().any(|e| e.message.contains("'a'")),
        "{:?}",
        sb.job.errors
    );
    assert_eq!((sb.waiting_on, sb.deps.len()), (0, 0), "a's edge is gone");
    assert_eq!(rec.step("d").unwrap().job.state, JobState::Cancelled);
    // Released on its `ignore_failure` edge (due at its run time, this test's clock, which
    // is after the real one the delete ended `a` at).
    let sc = rec.step("c").unwrap();
    assert!(
        matches!(sc.job.state, JobState::Available | JobState::Scheduled) && sc.waiting_on == 0,
        "c released: {:?}",
        sc.job.state
    );
    let back = store.retry_now(b, at(4)).await.unwrap().unwrap();
    assert_eq!(
        back.state,
        JobState::Available,
        "runs without the deleted step"
    );
    assert_eq!(
        get(&store, d).await.state,
        JobState::Pending,
        "revived with b"
    );
    let rows: Vec<JobRow> = claim(&store, "wf", 10, at(5))
        .await
        .into_iter()
        .filter(|r| r.id != c)
        .collect();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b]);
    complete(&store, &rows, 6).await;
    let rd = claim_steps(&store, &[d], 7).await;
    complete(&store, &rd, 8).await;
}

/// A step retried by hand while a failed dependency holds it waits for that dependency
/// again (`pending`); once the dependency is gone — deleted by hand, or pruned — its edge
/// stops counting and the step, left waiting for nothing, is released (it waited for ever
/// before). Pruning a failed dependency also lets a dependent it cancelled run without it
/// when retried later, as deleting one does.
pub async fn a_step_waiting_on_a_deleted_dependency_is_released<S: Store>(store: S) {
    waiting_on_a_removed_dependency(store, false).await;
}

/// [`a_step_waiting_on_a_deleted_dependency_is_released`], the dependency pruned.
pub async fn a_step_waiting_on_a_pruned_dependency_is_released<S: Store>(store: S) {
    waiting_on_a_removed_dependency(store, true).await;
}

async fn waiting_on_a_removed_dependency<S: Store>(store: S, pruned: bool) {
    let wf = if pruned { "w19" } else { "w18" };
    let ids = insert_wf(
        &store,
        workflow(
            wf,
            vec![
                step("a", &[]),
                step("b", &[]),
                step("c", &["a", "b"]),
                step("d", &["a"]),
            ],
        ),
    )
    .await;
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| id_of(&ids, n));
    let (ra, rb): (Vec<_>, Vec<_>) = claim_steps(&store, &[a, b], 1)
        .await
        .into_iter()
        .partition(|r| r.id == a);
    complete(&store, &rb, 2).await;
    discard(&store, &ra[0], 3).await;
    assert_eq!(get(&store, c).await.state, JobState::Cancelled);
    let back = store.retry_now(c, at(4)).await.unwrap().unwrap();
    assert_eq!(back.state, JobState::Pending, "{wf}: waits for a again");
    if pruned {
        let n = store.prune(JobState::Discarded, at(5), 100).await.unwrap();
        assert_eq!(n, 1, "{wf}: a pruned");
    } else {
        assert!(matches!(
            store.delete(a).await.unwrap(),
            errand_core::DeleteResult::Deleted(_)
        ));
    }
    let rec = store.workflow(wf).await.unwrap().unwrap();
    let sc = rec.step("c").unwrap();
    assert_eq!(sc.waiting_on, 0, "{wf}: a no longer counted");
    assert!(
        matches!(sc.job.state, JobState::Available | JobState::Scheduled),
        "{wf}: c released, not left waiting: {:?}",
        sc.job.state
    );
    // Cancelled by a and retried after it went: runs without it.
    let sd = rec.step("d").unwrap();
    assert_eq!(
        (sd.job.state, sd.waiting_on),
        (JobState::Cancelled, 0),
        "{wf}"
    );
    let back = store.retry_now(d, at(6)).await.unwrap().unwrap();
    assert_eq!(back.state, JobState::Available, "{wf}: d runs without a");
    store.promote_due(at(7), 100).await.unwrap();
    let rows = claim_steps(&store, &[c, d], 8).await;
    complete(&store, &rows, 9).await;
}
