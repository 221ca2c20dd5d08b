//! A workflow of at least `COPY_FROM` (5,000) steps is written by binary `COPY` rather than
//! by statement: every field reads back as given, steps born cancelled keep their reason,
//! and the workflow runs as one inserted by statement does.

use errand_core::{Backoff, FinishAction, JobState, NewStep, Store};
use errand_postgres::testing::scratch_store;
use errand_testkit::helpers::workflow::{insert_wf, step, workflow};
use errand_testkit::helpers::{at, claim, error, finish, t0};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_workflow_is_copied_field_for_field() {
    let store = scratch_store().await;
    // A failed step first: a new step depending on it is born cancelled.
    insert_wf(&store, workflow("big", vec![step("bad", &[])])).await;
    let bad = claim(&store, "wf", 10, at(1)).await.remove(0);
    let f = finish(
        &bad,
        at(2),
        FinishAction::Discard {
            error: error(&bad, at(2), "broken"),
        },
    );
    store.finish(&[f]).await.unwrap();

    const FAN: usize = 4_997;
    let mut steps: Vec<NewStep> = vec![step("root", &[])];
    for i in 0..FAN {
        let mut s = step(&format!("f-{i}"), &["root"]);
        s.job.args = format!("{{\"i\":{i},\"text\":\"é ✓ \\\"quoted\\\"\"}}");
        s.job.priority = (i % 7) as i16 - 3;
        s.job.max_attempts = 1 + (i % 4) as i32;
        s.job.run_at = at(i as i64 % 50);
        s.job.tags = if i % 3 == 0 {
            vec!["a".into(), format!("t{i}")]
        } else {
            vec![]
        };
        s.job.backoff = (i % 5 == 0).then_some(Backoff::Constant {
            delay_ms: i as u64,
            jitter: 0.0,
        });
        s.job.timeout_ms = (i % 2 == 0).then_some(1_000 + i as i64);
        s.job.partition_key = (i % 11 == 0).then(|| format!("p{i}"));
        steps.push(s);
    }
    let fan: Vec<String> = (0..FAN).map(|i| format!("f-{i}")).collect();
    let fan_refs: Vec<&str> = fan.iter().map(String::as_str).collect();
    steps.push(step("sum", &fan_refs));
    steps.push(step("doomed", &["bad", "root?"]));
    let asked = steps.clone();
    assert!(asked.len() >= 5_000, "large enough to be copied");
    let ids = insert_wf(&store, workflow("big", steps)).await;

    let rec = store.workflow("big").await.unwrap().unwrap();
    assert_eq!(rec.steps.len(), asked.len() + 1);
    for (s, (name, id)) in asked.iter().zip(&ids) {
        let got = rec.step(name).unwrap();
        let j = &got.job;
        assert_eq!(j.id, *id);
        assert_eq!(
            (j.kind.as_str(), j.queue.as_str()),
            (s.job.kind.as_str(), s.job.queue.as_str())
        );
        let args: serde_json::Value = serde_json::from_str(&j.args).unwrap();
        let want: serde_json::Value = serde_json::from_str(&s.job.args).unwrap();
        assert_eq!(args, want, "{name}");
        assert_eq!(
            (j.priority, j.max_attempts, j.run_at),
            (s.job.priority, s.job.max_attempts, s.job.run_at),
            "{name}"
        );
        assert_eq!(j.tags, s.job.tags, "{name}");
        assert_eq!(j.backoff, s.job.backoff, "{name}");
        assert_eq!(j.timeout_ms, s.job.timeout_ms, "{name}");
        assert_eq!(j.partition_key, s.job.partition_key, "{name}");
        assert_eq!(j.created_at, t0(), "{name}");
        let deps: Vec<&str> = got.deps.iter().map(|d| d.step.as_str()).collect();
        let want: Vec<&str> = s.deps.iter().map(|d| d.step.as_str()).collect();
        if name != "sum" {
            assert_eq!(deps, want, "{name}");
        } else {
            assert_eq!(deps.len(), FAN);
        }
    }
    assert_eq!(rec.step("root").unwrap().job.state, JobState::Available);
    let f0 = rec.step("f-0").unwrap();
    assert_eq!((f0.job.state, f0.waiting_on), (JobState::Pending, 1));
    assert_eq!(rec.step("sum").unwrap().waiting_on, FAN as i32);
    let doomed = rec.step("doomed").unwrap();
    assert_eq!(doomed.job.state, JobState::Cancelled);
    assert_eq!(doomed.cancelled_by, Some(bad.id));
    assert!(doomed.job.finalized_at.is_some());
    assert!(
        doomed.job.errors[0].message.contains("'bad'"),
        "{:?}",
        doomed.job.errors
    );
    assert!(doomed
        .deps
        .iter()
        .any(|d| d.step == "root" && d.ignore_failure));

    // It runs: the root's completion releases the fan-out, which releases the sum.
    let sum = rec.step("sum").unwrap().job.id;
    let root = claim(&store, "wf", 10, at(100)).await;
    assert_eq!(root.len(), 1);
    store
        .finish(&[finish(&root[0], at(101), FinishAction::Complete)])
        .await
        .unwrap();
    let mut done = 0;
    while done < FAN {
        let rows = claim(&store, "wf", 1_000, at(200)).await;
        assert!(!rows.is_empty(), "{done} of {FAN} released");
        assert!(rows.iter().all(|r| r.id != sum), "the sum waits for all");
        let batch: Vec<_> = rows
            .iter()
            .map(|r| finish(r, at(201), FinishAction::Complete))
            .collect();
        store.finish(&batch).await.unwrap();
        done += rows.len();
    }
    let last = claim(&store, "wf", 10, at(300)).await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].id, sum);
}
