//! errand in one file: a SQLite job queue that survives crashes.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Opens (or creates) `errand.db`, enqueues a mixed batch — thumbnail jobs, some of which fail
//! once and succeed on retry, and reminders delayed by a few seconds — then runs a worker
//! with a progress bar until every job is final, and prints the counts by state.
//!
//! Stop it half-way (Ctrl-C, or even `kill -9`) and run it again: it finishes the jobs the
//! first run left, and none is lost. Jobs that a killed run held are rescued once their
//! 5-second lease runs out.

use std::time::Duration;

use errand::store::Store;
use errand::{
    Backoff, Batch, Client, Job, JobContext, JobError, JobOptions, JobState, ListFilter, Outcome,
    SqliteStore, Worker,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

const QUEUE: &str = "quickstart";

/// Shared application state handed to every job (here: nothing but a label).
#[derive(Clone)]
struct App {
    name: &'static str,
}

/// Pretends to make a thumbnail; every seventh fails on its first attempt.
#[derive(Serialize, Deserialize)]
struct MakeThumbnail {
    image: u32,
}

impl Job for MakeThumbnail {
    const KIND: &'static str = "make_thumbnail";
    const QUEUE: &'static str = QUEUE;
    type State = App;

    async fn run(self, cx: JobContext<App>) -> Result<Outcome, JobError> {
        if self.image.is_multiple_of(7) && cx.attempt() == 1 {
            return Err(JobError::msg(format!(
                "{}: image store unavailable (simulated), will retry",
                cx.state().name
            )));
        }
        tokio::time::sleep(Duration::from_millis(100 + u64::from(self.image % 5) * 25)).await;
        Ok(Outcome::Complete)
    }

    fn options(&self) -> JobOptions {
        JobOptions::new()
            .max_attempts(5)
            .backoff(Backoff::constant(Duration::from_millis(500)))
    }
}

/// A reminder enqueued with a delay.
#[derive(Serialize, Deserialize)]
struct SendReminder {
    user: u32,
}

impl Job for SendReminder {
    const KIND: &'static str = "send_reminder";
    const QUEUE: &'static str = QUEUE;
    type State = App;

    async fn run(self, _cx: JobContext<App>) -> Result<Outcome, JobError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(Outcome::Complete)
    }
}

fn open_jobs() -> ListFilter {
    ListFilter::new().queue(QUEUE).unfinished()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();

    let store = SqliteStore::open("errand.db").await?;
    let client = Client::new(store.clone());

    let left = client.count(&open_jobs()).await?;
    if left > 0 {
        println!("errand.db has {left} unfinished jobs from an earlier run: finishing them");
    } else {
        let mut batch = Batch::new();
        for image in 0..300 {
            batch.add(MakeThumbnail { image });
        }
        for user in 0..20 {
            let delay = Duration::from_millis(2_000 + u64::from(user) * 200);
            batch.add_with(SendReminder { user }, JobOptions::new().delay(delay));
        }
        let n = client.enqueue_batch(batch).await?.len();
        println!("enqueued {n} jobs into errand.db (300 thumbnails, 20 reminders delayed 2–6 s)");
    }

    let total = client.count(&open_jobs()).await?;
    let worker = Worker::builder(store.clone(), App { name: "quickstart" })
        .register::<MakeThumbnail>()
        .register::<SendReminder>()
        .queue(QUEUE, 8)
        .lease(Duration::from_secs(5))
        .rescue_interval(Duration::from_secs(1))
        .schedule_interval(Duration::from_millis(200))
        .build()?
        .start();

    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} jobs final  {msg}")?
            .progress_chars("=> "),
    );
    let interrupted = loop {
        let open = client.count(&open_jobs()).await?;
        bar.set_position(total.saturating_sub(open));
        let retrying = client
            .count(&ListFilter::new().queue(QUEUE).state(JobState::Retryable))
            .await?;
        let waiting = client
            .count(&ListFilter::new().queue(QUEUE).state(JobState::Scheduled))
            .await?;
        bar.set_message(format!("{retrying} retrying, {waiting} scheduled"));
        if open == 0 {
            break false;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = errand::shutdown_signal() => break true,
        }
    };
    if interrupted {
        bar.abandon();
    } else {
        bar.finish();
    }
    // Graceful: running jobs get the grace period to finish; the rest go back to the queue.
    let report = worker.shutdown().await;
    if interrupted {
        println!(
            "interrupted: running jobs were let finish ({} returned to the queue unfinished); \
             run again to do the rest",
            report.released
        );
    }

    println!("\njobs in queue '{QUEUE}' by state:");
    for s in store.stats(&[]).await?.iter().filter(|s| s.queue == QUEUE) {
        println!("  {:<10} {}", s.state.as_str(), s.count);
    }
    println!("\ninspect them with: cargo run -p errand-cli -- stats   (or: errand jobs list)");
    Ok(())
}
