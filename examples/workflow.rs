//! A workflow: fetch several pages in parallel, then summarize them — a fan-out discovered at
//! run time, a fan-in that waits for all of it, and outputs read back typed by job.
//!
//! ```sh
//! cargo run --example workflow
//! errand --database-url workflow-example.db workflows list
//! errand --database-url workflow-example.db workflows show <id>
//! ```
//!
//! A worker on `workflow-example.db` runs the workflow `site-report`: its first step,
//! `plan`, finds the site's pages (here a fixed list, as a sitemap would give) and adds one
//! `fetch-N` step per page to its own workflow, each waiting for `plan`, plus `summarize`,
//! which waits for every fetch. The fetches run in parallel (4 at a time); `summarize` runs
//! once, after the last of them, and reads their outputs as `Page`s. One page is missing:
//! its fetch is discarded, and `summarize` still runs because it waits for that fetch with
//! `ignore_failure` — the others' outputs are what it summarizes.

use std::time::Duration;

use errand::{
    Client, Dep, Job, JobContext, JobError, Outcome, Produces, SqliteStore, Worker, Workflow,
};
use serde::{Deserialize, Serialize};

/// Finds the pages of a site and fans out over them.
#[derive(Serialize, Deserialize)]
struct Plan {
    site: String,
}

impl Job for Plan {
    const KIND: &'static str = "plan";
    const QUEUE: &'static str = "workflow-example";
    type State = ();

    async fn run(self, cx: JobContext<()>) -> Result<Outcome, JobError> {
        // …read the sitemap…
        let pages = ["/", "/about", "/pricing", "/blog", "/missing", "/contact"];
        let fetches: Vec<FetchPage> = pages
            .iter()
            .map(|p| FetchPage {
                url: format!("https://{}{p}", self.site),
            })
            .collect();
        let names: Vec<String> = (0..fetches.len()).map(|i| format!("fetch-{i}")).collect();
        let added = cx
            .add_steps(
                Workflow::extend("")
                    .add_each("fetch", fetches, ["plan"])
                    .add_after(
                        "summarize",
                        Summarize,
                        names.iter().map(|n| Dep::on(n).ignore_failure()),
                    ),
            )
            .await?;
        Ok(Outcome::complete_with(&added.steps.len()))
    }
}

/// Fetches one page.
#[derive(Serialize, Deserialize)]
struct FetchPage {
    url: String,
}

/// What a fetch returns.
#[derive(Debug, Serialize, Deserialize)]
struct Page {
    url: String,
    words: usize,
}

impl Job for FetchPage {
    const KIND: &'static str = "fetch_page";
    const QUEUE: &'static str = "workflow-example";
    type State = ();

    async fn run(self, _cx: JobContext<()>) -> Result<Outcome, JobError> {
        tokio::time::sleep(Duration::from_millis(100)).await; // …GET the page…
        if self.url.ends_with("/missing") {
            return Ok(Outcome::discard("404 Not Found"));
        }
        let words = self.url.len() * 37 % 900 + 100;
        Ok(Outcome::output::<Self>(&Page {
            url: self.url,
            words,
        }))
    }
}

impl Produces for FetchPage {
    type Output = Page;
}

/// Summarizes every fetched page.
#[derive(Serialize, Deserialize)]
struct Summarize;

/// What the summary returns.
#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    pages: usize,
    failed: u64,
    words: usize,
}

impl Job for Summarize {
    const KIND: &'static str = "summarize";
    const QUEUE: &'static str = "workflow-example";
    type State = ();

    async fn run(self, cx: JobContext<()>) -> Result<Outcome, JobError> {
        let pages = cx.outputs_of::<FetchPage>().await?;
        let counts = cx.batch_counts().await?;
        for (step, page) in &pages {
            println!("  {step}: {} ({} words)", page.url, page.words);
        }
        Ok(Outcome::output::<Self>(&Summary {
            pages: pages.len(),
            failed: counts.discarded + counts.cancelled,
            words: pages.iter().map(|(_, p)| p.words).sum(),
        }))
    }
}

impl Produces for Summarize {
    type Output = Summary;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = std::fs::remove_file("workflow-example.db");
    let store = SqliteStore::open("workflow-example.db").await?;
    let worker = Worker::builder(store.clone(), ())
        .register::<Plan>()
        .register::<FetchPage>()
        .register::<Summarize>()
        .queue("workflow-example", 4)
        .build()?
        .start();

    let client = Client::new(store);
    let wf = client
        .enqueue_workflow(Workflow::new("site-report").add(
            "plan",
            Plan {
                site: "example.com".into(),
            },
        ))
        .await?;
    println!("enqueued workflow {}", wf.id);

    let done = client
        .wait_workflow(&wf.id, Duration::from_secs(30))
        .await?
        .expect("the workflow exists");
    assert!(done.is_finished(), "the workflow ended within 30 s");
    for s in &done.steps {
        let deps: Vec<&str> = s.deps.iter().map(|d| d.step.as_str()).collect();
        println!(
            "{:<10} job {:>2} {:<9} after [{}]",
            s.step,
            s.job.id,
            s.job.state,
            deps.join(", ")
        );
    }
    let summary = done.step("summarize").expect("plan added it");
    let out: Summary = client
        .output::<Summarize>(summary.job.id)
        .await?
        .expect("summarize returned its output");
    println!(
        "summary: {} pages, {} words, {} failed",
        out.pages, out.words, out.failed
    );
    println!(
        "see it: errand --database-url workflow-example.db workflows show {}",
        wf.id
    );

    worker.shutdown().await;
    Ok(())
}
