//! Workflows through the public API: enqueued in the application's transaction (rolled back:
//! nothing), a completion in the application's transaction releasing dependents, and typed
//! outputs read by a step, refused with a clear error when the name or the type is wrong.

mod common;

use std::time::Duration;

use common::*;
use errand::store::{NewJob, NewStep, NewWorkflow, StepDep, Store};
use errand::{
    Client, Dep, Job, JobContext, JobError, JobState, Outcome, OutputError, Produces, Workflow,
};
use serde::{Deserialize, Serialize};

fn steps_ab() -> Workflow {
    Workflow::new("tx")
        .add("a", Echo { n: 1 })
        .add_after("b", Echo { n: 2 }, ["a"])
}

/// Rolled back, the workflow does not exist; committed, its steps run in order. One body
/// for both SQL stores, whose transactions are of different types.
macro_rules! rolled_back_then_committed {
    ($store:expr) => {{
        let store = $store;
        let client = Client::new(store.clone());
        let mut tx = store.pool().begin().await.unwrap();
        let gone = client
            .enqueue_workflow_tx(&mut tx, steps_ab())
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        assert!(client.workflow(&gone.id).await.unwrap().is_none());
        assert!(client.workflows(10, None).await.unwrap().is_empty());
        assert_eq!(store.count(&errand::ListFilter::new()).await.unwrap(), 0);

        let mut tx = store.pool().begin().await.unwrap();
        let kept = client
            .enqueue_workflow_tx(&mut tx, steps_ab())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        runs_to_the_end(store, &kept.id).await;
    }};
}

/// Steps added in the application's transaction may hold back a pending step, as from a
/// running step: committed, it waits for them too; rolled back, nothing changed.
macro_rules! held_in_a_transaction {
    ($store:expr) => {{
        let store = $store;
        let client = Client::new(store.clone());
        let wf = client.enqueue_workflow(steps_ab()).await.unwrap();
        let more = || {
            Workflow::extend(wf.id.clone())
                .add("c", Echo { n: 3 })
                .before("b")
        };
        let mut tx = store.pool().begin().await.unwrap();
        client.enqueue_workflow_tx(&mut tx, more()).await.unwrap();
        tx.rollback().await.unwrap();
        let rec = client.workflow(&wf.id).await.unwrap().unwrap();
        assert_eq!((rec.steps.len(), rec.step("b").unwrap().waiting_on), (2, 1));
        let mut tx = store.pool().begin().await.unwrap();
        client.enqueue_workflow_tx(&mut tx, more()).await.unwrap();
        tx.commit().await.unwrap();
        let rec = client.workflow(&wf.id).await.unwrap().unwrap();
        let b = rec.step("b").unwrap();
        let deps: Vec<&str> = b.deps.iter().map(|d| d.step.as_str()).collect();
        assert_eq!((b.waiting_on, deps), (2, vec!["a", "c"]));
    }};
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_steps_added_in_a_transaction_hold_back_a_pending_step() {
    let (store, _dir) = sqlite().await;
    held_in_a_transaction!(store);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_steps_added_in_a_transaction_hold_back_a_pending_step() {
    held_in_a_transaction!(errand_postgres::testing::scratch_store().await);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_workflow_enqueued_in_a_rolled_back_transaction_does_not_exist() {
    let (store, _dir) = sqlite().await;
    rolled_back_then_committed!(store);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_workflow_enqueued_in_a_rolled_back_transaction_does_not_exist() {
    rolled_back_then_committed!(errand_postgres::testing::scratch_store().await);
}

async fn runs_to_the_end<S: Store + Clone>(store: S, id: &str) {
    let probe = Probe::default();
    let worker = started(store.clone(), probe.clone());
    let client = Client::new(store);
    let wf = client
        .wait_workflow(id, Duration::from_secs(20))
        .await
        .unwrap()
        .expect("committed");
    assert!(wf.is_finished(), "{wf:?}");
    let (a, b) = (wf.step("a").unwrap(), wf.step("b").unwrap());
    assert!(wf.steps.iter().all(|s| s.job.state == JobState::Completed));
    assert_eq!((probe.runs(a.job.id), probe.runs(b.job.id)), (1, 1));
    worker.shutdown().await;
}

fn raw(kind: &str, now: chrono::DateTime<chrono::Utc>) -> NewJob {
    let mut j = raw_job(kind, "{}");
    j.queue = "wf".into();
    j.run_at = now;
    j
}

/// A parent completed in the application's own transaction (`complete_in`) releases its
/// dependent when that transaction commits — the settling the store's outcome batches do not
/// do here (SQLite: the trigger on `has_dependents`; Postgres: the row trigger).
async fn completion_in_a_transaction_releases<S: Store>(
    store: &S,
    complete: impl AsyncFnOnce(errand::store::LeaseRef),
) {
    let now = store.now(chrono::Utc::now()).await;
    let wf = NewWorkflow {
        id: "in-tx".into(),
        name: "in-tx".into(),
        steps: vec![
            NewStep {
                step: "a".into(),
                job: raw("a", now),
                deps: vec![],
            },
            NewStep {
                step: "b".into(),
                job: raw("b", now),
                deps: vec![StepDep {
                    step: "a".into(),
                    ignore_failure: false,
                }],
            },
        ],
        holds: vec![],
    };
    let ids = store.insert_workflow(&wf, now).await.unwrap();
    let mut req = errand::store::ClaimRequest {
        queue: "wf".into(),
        limit: 10,
        worker_id: "w".into(),
        now,
        lease: Duration::from_secs(30),
        held: None,
    };
    let claimed = store.claim(&req).await.unwrap();
    assert_eq!(
        claimed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    complete(claimed[0].lease_ref()).await;
    assert_eq!(
        store.get(ids[0]).await.unwrap().unwrap().state,
        JobState::Completed
    );
    req.now = store.now(chrono::Utc::now()).await;
    let next = store.claim(&req).await.unwrap();
    assert_eq!(next.iter().map(|r| r.id).collect::<Vec<_>>(), vec![ids[1]]);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_completion_in_the_applications_transaction_releases_dependents() {
    let (store, _dir) = sqlite().await;
    completion_in_a_transaction_releases(&store, async |lease| {
        let mut tx = store.pool().begin().await.unwrap();
        assert!(store.complete_in(&mut tx, lease).await.unwrap());
        tx.commit().await.unwrap();
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_completion_in_the_applications_transaction_releases_dependents() {
    let store = errand_postgres::testing::scratch_store().await;
    completion_in_a_transaction_releases(&store, async |lease| {
        let mut tx = store.pool().begin().await.unwrap();
        assert!(store.complete_in(&mut tx, lease).await.unwrap());
        tx.commit().await.unwrap();
    })
    .await;
}

/// Fetches a page (here: returns its length).
#[derive(Serialize, Deserialize)]
struct Fetch {
    url: String,
}
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Page {
    len: usize,
}
impl Job for Fetch {
    const KIND: &'static str = "wf_fetch";
    type State = tokio::sync::mpsc::UnboundedSender<String>;
    async fn run(self, _cx: JobContext<Self::State>) -> Result<Outcome, JobError> {
        Ok(Outcome::output::<Self>(&Page {
            len: self.url.len(),
        }))
    }
}
impl Produces for Fetch {
    type Output = Page;
}

/// Produces a number; used to ask for an output of the wrong type.
#[derive(Serialize, Deserialize)]
struct Count;
impl Job for Count {
    const KIND: &'static str = "wf_count";
    type State = tokio::sync::mpsc::UnboundedSender<String>;
    async fn run(self, _cx: JobContext<Self::State>) -> Result<Outcome, JobError> {
        Ok(Outcome::output::<Self>(&7))
    }
}
impl Produces for Count {
    type Output = u32;
}

/// Reads its dependencies' outputs and reports what it read, and each wrong read's error.
#[derive(Serialize, Deserialize)]
struct Report;
impl Job for Report {
    const KIND: &'static str = "wf_report";
    type State = tokio::sync::mpsc::UnboundedSender<String>;
    async fn run(self, cx: JobContext<Self::State>) -> Result<Outcome, JobError> {
        let tx = cx.state();
        let page = cx.output_of::<Fetch>("home").await?;
        tx.send(format!("home {}", page.len)).unwrap();
        let all = cx.outputs_of::<Fetch>().await?;
        tx.send(format!("fetched {}", all.len())).unwrap();
        let n = cx.output_of::<Count>("count").await?;
        tx.send(format!("count {n}")).unwrap();
        let wrong: Result<u32, OutputError> = cx.output_of::<Count>("home").await;
        tx.send(format!("wrong type: {}", wrong.unwrap_err()))
            .unwrap();
        let missing = cx.output_of::<Fetch>("nope").await;
        tx.send(format!("wrong name: {}", missing.unwrap_err()))
            .unwrap();
        let counts = cx.batch_counts().await?;
        tx.send(format!(
            "ended {} {}",
            counts.completed,
            counts.all_succeeded()
        ))
        .unwrap();
        Ok(Outcome::Complete)
    }
}

/// A step reads its dependencies' outputs typed by their job types, and a wrong step name or
/// type is a clear error naming what it found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_reads_its_dependencies_outputs_typed() {
    let store = errand::MemoryStore::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = errand::Worker::builder(store.clone(), tx)
        .register::<Fetch>()
        .register::<Count>()
        .register::<Report>()
        .queue("default", 4)
        .build()
        .unwrap()
        .start();
    let client = Client::new(store);
    let wf = client
        .enqueue_workflow(
            Workflow::new("outputs")
                .add(
                    "home",
                    Fetch {
                        url: "https://example.com/".into(),
                    },
                )
                .add(
                    "about",
                    Fetch {
                        url: "https://example.com/about".into(),
                    },
                )
                .add("count", Count)
                .add_after(
                    "report",
                    Report,
                    [Dep::on("home"), Dep::on("about"), Dep::on("count")],
                ),
        )
        .await
        .unwrap();
    let done = client
        .wait_workflow(&wf.id, Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    assert!(done.is_finished());
    assert_eq!(done.step("report").unwrap().job.state, JobState::Completed);
    let mut said = Vec::new();
    while let Ok(m) = rx.try_recv() {
        said.push(m);
    }
    assert_eq!(said[0], "home 20");
    assert_eq!(said[1], "fetched 2");
    assert_eq!(said[2], "count 7");
    assert!(
        said[3].contains("'home' is a job of kind wf_fetch, not wf_count"),
        "{}",
        said[3]
    );
    assert!(
        said[4].contains("'nope' is not a dependency") && said[4].contains("home"),
        "{}",
        said[4]
    );
    assert_eq!(said[5], "ended 3 true");
    worker.shutdown().await;
}

/// Crawls: adds one `Fetch` per page it "finds" to its own workflow, before the summary
/// declared up front and before the batch's callback.
#[derive(Serialize, Deserialize)]
struct Crawl {
    pages: Vec<String>,
}
impl Job for Crawl {
    const KIND: &'static str = "wf_crawl";
    type State = tokio::sync::mpsc::UnboundedSender<String>;
    async fn run(self, cx: JobContext<Self::State>) -> Result<Outcome, JobError> {
        let fetches = self.pages.into_iter().map(|url| Fetch { url });
        cx.add_steps(
            Workflow::extend("")
                .add_each("page", fetches, ["crawl"])
                .before("summarize")
                .before(Dep::on("done").ignore_failure()),
        )
        .await?;
        Ok(Outcome::Complete)
    }
}

/// Sums the pages fetched before it.
#[derive(Serialize, Deserialize)]
struct Summarize;
impl Job for Summarize {
    const KIND: &'static str = "wf_summarize";
    type State = tokio::sync::mpsc::UnboundedSender<String>;
    async fn run(self, cx: JobContext<Self::State>) -> Result<Outcome, JobError> {
        let pages = cx.outputs_of::<Fetch>().await?;
        let total: usize = pages.iter().map(|(_, p)| p.len).sum();
        cx.state()
            .send(format!("summary {} pages {total} bytes", pages.len()))
            .unwrap();
        Ok(Outcome::Complete)
    }
}

/// The batch's callback: how its members ended.
#[derive(Serialize, Deserialize)]
struct Done;
impl Job for Done {
    const KIND: &'static str = "wf_done";
    type State = tokio::sync::mpsc::UnboundedSender<String>;
    async fn run(self, cx: JobContext<Self::State>) -> Result<Outcome, JobError> {
        let c = cx.batch_counts().await?;
        cx.state()
            .send(format!("done {} completed of {}", c.completed, c.total()))
            .unwrap();
        Ok(Outcome::Complete)
    }
}

/// A fan-in declared up front waits for the fan-out its dependency adds as it runs, and so
/// does the batch's `on_complete` callback: neither runs before the pages added at run time
/// ended, and both read them. On a SQLite file, through a worker.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_in_declared_up_front_waits_for_steps_added_at_run_time() {
    let (store, _dir) = sqlite().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = errand::Worker::builder(store.clone(), tx)
        .register::<Crawl>()
        .register::<Fetch>()
        .register::<Summarize>()
        .register::<Done>()
        .queue("default", 4)
        .build()
        .unwrap()
        .start();
    let client = Client::new(store);
    let pages: Vec<String> = [
        "https://a.example/",
        "https://b.example/xy",
        "https://c.example/xyz",
    ]
    .map(String::from)
    .into();
    let wf = client
        .enqueue_workflow(
            Workflow::new("crawl")
                .add(
                    "crawl",
                    Crawl {
                        pages: pages.clone(),
                    },
                )
                .add_after("summarize", Summarize, ["crawl"])
                .on_complete("done", Done),
        )
        .await
        .unwrap();
    let end = client
        .wait_workflow(&wf.id, Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    assert!(
        end.steps.iter().all(|s| s.job.state == JobState::Completed),
        "{end:?}"
    );
    assert_eq!(end.steps.len(), 6, "crawl, summarize, done and three pages");
    let last_page_end = end
        .steps
        .iter()
        .filter(|s| s.step.starts_with("page-"))
        .map(|s| s.job.finalized_at.unwrap())
        .max()
        .unwrap();
    for callback in ["summarize", "done"] {
        let s = end.step(callback).unwrap();
        assert_eq!(
            s.deps.len(),
            if callback == "done" { 5 } else { 4 },
            "{callback}: {:?}",
            s.deps
        );
        let started = s.job.attempted_at.expect("it ran");
        assert!(
            started >= last_page_end,
            "{callback} started before a page ended"
        );
    }
    let mut said = Vec::new();
    while let Ok(m) = rx.try_recv() {
        said.push(m);
    }
    said.sort();
    let bytes: usize = pages.iter().map(String::len).sum();
    assert_eq!(
        said,
        vec![
            "done 5 completed of 5".to_owned(),
            format!("summary 3 pages {bytes} bytes")
        ]
    );
    worker.shutdown().await;
}
