//! Results, progress and uniqueness: a job reports how far it got and returns a typed value;
//! the application waits for it and reads the value; the same job enqueued twice is one job.
//!
//! ```sh
//! cargo run --example results
//! ```
//!
//! A worker on `results-example.db` resizes one image (in ten steps, reporting each); the
//! client enqueues the resize twice (unique by arguments: the second returns the first's
//! id), waits for it to end, prints its progress and its result. In production the wait may
//! run in another process: on Postgres its end is announced by `NOTIFY`.

use std::time::Duration;

use errand::{Client, Job, JobContext, JobError, JobOptions, Outcome, SqliteStore, Unique, Worker};
use serde::{Deserialize, Serialize};

/// Resizes one image.
#[derive(Serialize, Deserialize)]
struct Resize {
    image: String,
    width: u32,
}

/// What a resize returns.
#[derive(Debug, Serialize, Deserialize)]
struct Resized {
    url: String,
    bytes: u64,
}

impl Job for Resize {
    const KIND: &'static str = "resize";
    const QUEUE: &'static str = "results-example";
    type State = ();

    async fn run(self, cx: JobContext<()>) -> Result<Outcome, JobError> {
        for step in 1..=10 {
            tokio::time::sleep(Duration::from_millis(30)).await; // …resize a tenth…
            cx.progress(f64::from(step) * 10.0, format!("{step} of 10 tiles"))
                .await;
        }
        Ok(Outcome::complete_with(&Resized {
            url: format!("https://cdn.example/{}-{}w.jpg", self.image, self.width),
            bytes: 48_213,
        }))
    }

    fn options(&self) -> JobOptions {
        // The same image at the same width is one job until it ends, and for an hour after.
        JobOptions::new().unique(Unique::by_args().period(Duration::from_secs(3600)))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = std::fs::remove_file("results-example.db");
    let store = SqliteStore::open("results-example.db").await?;
    let worker = Worker::builder(store.clone(), ())
        .register::<Resize>()
        .queue("results-example", 2)
        .build()?
        .start();

    let client = Client::new(store);
    let job = || Resize {
        image: "cat".into(),
        width: 640,
    };
    let first = client.enqueue(job()).await?;
    let again = client.enqueue(job()).await?;
    println!(
        "enqueued job {} (inserted: {}); again: job {} (inserted: {})",
        first.id, first.inserted, again.id, again.inserted
    );

    let row = client.wait(first.id, Duration::from_secs(30)).await?;
    let progress = row.progress.as_ref().expect("the job reported progress");
    println!(
        "job {} is {}; last progress: {:.0} % ({})",
        row.id,
        row.state,
        progress.percent.unwrap_or_default(),
        progress.message
    );
    let resized: Option<Resized> = row.result_as()?;
    println!("result: {resized:?}");

    worker.shutdown().await;
    Ok(())
}
