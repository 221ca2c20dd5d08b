//! Small builders the cases share.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use errand_core::{
    ClaimRequest, ErrorRecord, Finish, FinishAction, JobId, JobRow, NewJob, QueueLimits, Store,
};

/// A fixed instant the cases count from (whole milliseconds, so every store round-trips it).
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}

/// `t0` plus `secs` seconds.
pub fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

/// A job of `kind` on `queue`, available at `t0`, 3 attempts.
pub fn job(kind: &str, queue: &str) -> NewJob {
    NewJob {
        kind: kind.to_owned(),
        queue: queue.to_owned(),
        args: r#"{"n":1}"#.to_owned(),
        priority: 0,
        max_attempts: 3,
        run_at: t0(),
        tags: Vec::new(),
        unique_key: None,
        unique_states: Default::default(),
        unique_for_ms: None,
        backoff: None,
        timeout_ms: None,
        partition_key: None,
    }
}

/// Limits of at most `n` running jobs (`None`: no limits).
pub fn running_limit(n: Option<u32>) -> QueueLimits {
    QueueLimits {
        max_running: n,
        ..QueueLimits::default()
    }
}

/// Inserts one job and returns its id.
pub async fn insert_one<S: Store>(store: &S, job: NewJob) -> JobId {
    let res = store.insert(vec![job], t0()).await.expect("insert");
    assert_eq!(res.len(), 1);
    res[0].id
}

/// Inserts `n` default jobs on `queue`.
pub async fn insert_n<S: Store>(store: &S, queue: &str, n: usize) -> Vec<JobId> {
    let jobs = (0..n).map(|_| job("noop", queue)).collect();
    store
        .insert(jobs, t0())
        .await
        .expect("insert")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// A claim request at `now` with a 30 s lease.
pub fn claim_req(queue: &str, limit: u32, now: DateTime<Utc>) -> ClaimRequest {
    ClaimRequest {
        queue: queue.to_owned(),
        limit,
        worker_id: "w1".to_owned(),
        now,
        lease: Duration::from_secs(30),
        held: None,
    }
}

/// Claims up to `limit` jobs on `queue` at `now`.
pub async fn claim<S: Store>(
    store: &S,
    queue: &str,
    limit: u32,
    now: DateTime<Utc>,
) -> Vec<JobRow> {
    store
        .claim(&claim_req(queue, limit, now))
        .await
        .expect("claim")
}

/// Fetches a job that must exist.
pub async fn get<S: Store>(store: &S, id: JobId) -> JobRow {
    store.get(id).await.expect("get").expect("job exists")
}

/// The finish of `row`'s attempt at `at` with `action`.
pub fn finish(row: &JobRow, at: DateTime<Utc>, action: FinishAction) -> Finish {
    Finish {
        lease: row.lease_ref(),
        at,
        action,
    }
}

/// An error record for `row`'s attempt.
pub fn error(row: &JobRow, at: DateTime<Utc>, msg: &str) -> ErrorRecord {
    ErrorRecord::new(row.attempt, at, msg)
}

/// Parses JSON text, for comparing payloads independent of a store's formatting.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("invalid JSON {s:?}: {e}"))
}

/// A fresh file path for a database of this test process: `<tmp>/errand-test-<pid>/<n>.db`.
/// The folder lives until the process ends (a store may outlive any guard a factory could
/// return); folders of test processes that have exited are removed on the first call, so
/// runs leave at most one folder per test binary behind instead of one per case.
pub fn scratch_db_path() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let tmp = std::env::temp_dir();
    if n == 0 {
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("errand-test-") else {
                    continue;
                };
                let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
                if !alive && pid.parse::<u32>().is_ok() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let dir = tmp.join(format!("errand-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the test database folder");
    dir.join(format!("{n}.db"))
}

/// Racing inserts of one unique job: exactly one was written and every result names it.
/// Returns its id.
pub fn assert_one_inserted(results: &[errand_core::InsertResult]) -> JobId {
    assert_eq!(
        results.iter().filter(|r| r.inserted).count(),
        1,
        "{results:?}"
    );
    let ids: std::collections::HashSet<_> = results.iter().map(|r| r.id).collect();
    assert_eq!(
        ids.len(),
        1,
        "every duplicate names the one job: {results:?}"
    );
    results[0].id
}

/// Eight claimers race over `queue` ("w0".."w7"), each claiming up to `want`, then running
/// `check` (which asserts what must hold at every moment), then completing what it took,
/// until nothing is available (or a round limit). Returns how many jobs were completed.
pub async fn race_claimers<S, F, Fut>(store: &S, queue: &str, want: u32, check: F) -> usize
where
    S: Store + Clone + 'static,
    F: Fn(S) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (store, queue, check) = (store.clone(), queue.to_owned(), check.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            for round in 0..400 {
                let mut req = claim_req(&queue, want, at(1));
                req.worker_id = format!("w{w}");
                let rows = store.claim(&req).await.expect("claim");
                check(store.clone()).await;
                if rows.is_empty() {
                    let left = store
                        .count(
                            &errand_core::ListFilter::new()
                                .queue(queue.clone())
                                .state(errand_core::JobState::Available),
                        )
                        .await
                        .unwrap();
                    if left == 0 || round > 350 {
                        break;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                let batch: Vec<_> = rows
                    .iter()
                    .map(|r| finish(r, at(2), FinishAction::Complete))
                    .collect();
                done += store.finish(&batch).await.unwrap().len();
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

/// Builders for workflow cases.
pub mod workflow {
    use errand_core::{JobId, NewStep, NewWorkflow, StepDep, Store};

    use super::{job, t0};

    /// A step named `step` on queue `wf`, waiting for `deps` (a name ending in `?` is an
    /// `ignore_failure` edge), one attempt.
    pub fn step(name: &str, deps: &[&str]) -> NewStep {
        let mut j = job(name, "wf");
        j.max_attempts = 1;
        NewStep {
            step: name.to_owned(),
            job: j,
            deps: deps
                .iter()
                .map(|d| StepDep {
                    step: d.trim_end_matches('?').to_owned(),
                    ignore_failure: d.ends_with('?'),
                })
                .collect(),
        }
    }

    /// A workflow `id` of these steps.
    pub fn workflow(id: &str, steps: Vec<NewStep>) -> NewWorkflow {
        NewWorkflow {
            id: id.to_owned(),
            name: format!("{id} name"),
            steps,
            holds: vec![],
        }
    }

    /// Existing steps that new ones hold back (a name ending in `?`: `ignore_failure`).
    pub fn holds(names: &[&str]) -> Vec<StepDep> {
        names
            .iter()
            .map(|d| StepDep {
                step: d.trim_end_matches('?').to_owned(),
                ignore_failure: d.ends_with('?'),
            })
            .collect()
    }

    /// Inserts the workflow at `t0` and returns each step's id by name.
    pub async fn insert_wf<S: Store>(store: &S, wf: NewWorkflow) -> Vec<(String, JobId)> {
        let names: Vec<String> = wf.steps.iter().map(|s| s.step.clone()).collect();
        let ids = store
            .insert_workflow(&wf, t0())
            .await
            .expect("insert_workflow");
        assert_eq!(ids.len(), names.len(), "one id per step");
        names.into_iter().zip(ids).collect()
    }
}
