//! Flow control: one running sync per customer, and at most 10 syncs a second overall,
//! enforced by the store for every worker of every process.
//!
//! ```sh
//! cargo run --example limits
//! ```
//!
//! A worker with 8 slots on `limits-example.db` works the `sync` queue. Customer `acme` has
//! 30 syncs queued ahead of 4 other customers with 3 each. The partition key (the customer,
//! derived from the job's arguments) and the queue's limits make the customers take turns,
//! one sync each at a time, at 10 starts a second: the small customers are done long before
//! `acme`'s backlog is, and no customer ever has two syncs running.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use errand::{
    Client, Job, JobContext, JobError, JobOptions, Outcome, QueueLimits, RateLimit, SqliteStore,
    Worker,
};
use serde::{Deserialize, Serialize};

/// Pulls one customer's changes from a rate-limited API.
#[derive(Serialize, Deserialize)]
struct Sync {
    customer: String,
}

/// When each sync ran, by customer.
type Log = Arc<Mutex<Vec<(String, Duration)>>>;

impl Job for Sync {
    const KIND: &'static str = "sync";
    const QUEUE: &'static str = "sync";
    type State = (Instant, Log);

    async fn run(self, cx: JobContext<(Instant, Log)>) -> Result<Outcome, JobError> {
        let (t0, log) = cx.state();
        log.lock().unwrap().push((self.customer, t0.elapsed()));
        tokio::time::sleep(Duration::from_millis(50)).await; // …call the API…
        Ok(Outcome::Complete)
    }

    fn options(&self) -> JobOptions {
        // One partition per customer.
        JobOptions::new().partition_key(&self.customer)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = std::fs::remove_file("limits-example.db");
    let store = SqliteStore::open("limits-example.db").await?;
    let client = Client::new(store.clone());
    let limits = QueueLimits::default()
        .max_per_key(1)
        .rate(RateLimit::new(10, Duration::from_secs(1)));
    client.set_queue_limits("sync", limits).await?;
    let sync = |c: &str| Sync { customer: c.into() };
    client.enqueue_many((0..30).map(|_| sync("acme"))).await?;
    for c in ["bolt", "cargo", "delta", "echo"] {
        client.enqueue_many((0..3).map(|_| sync(c))).await?;
    }

    let log = Log::default();
    let worker = Worker::builder(store.clone(), (Instant::now(), log.clone()))
        .register::<Sync>()
        .queue("sync", 8)
        .build()?
        .start();
    // Until the four small customers are done.
    while log.lock().unwrap().iter().filter(|r| r.0 != "acme").count() < 12 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await;

    let log = log.lock().unwrap();
    let starts: Vec<String> = log
        .iter()
        .map(|(c, t)| format!("{:.1}s {c}", t.as_secs_f64()))
        .collect();
    println!("starts: {}", starts.join(", "));
    let acme = log.iter().filter(|r| r.0 == "acme").count();
    let span = log.last().map(|r| r.1).unwrap_or_default();
    println!(
        "the 4 small customers' 12 syncs ran while acme ran {acme} of its 30 ({} starts in \
         {:.1} s: under 10 a second)",
        log.len(),
        span.as_secs_f64()
    );
    Ok(())
}
