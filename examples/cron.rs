//! Cron: jobs enqueued on a schedule, once per tick however many workers carry the entry.
//!
//! ```sh
//! cargo run --example cron
//! ```
//!
//! Two workers share `cron-example.db`, as two machines would share a database, and both
//! carry the same entries: a digest every 2 seconds and a cleanup every hour. For about
//! seven seconds each digest tick runs once (on whichever worker claims it); then both shut
//! down and the example lists the cron jobs in the store, with the next tick already waiting.

use std::time::Duration;

use errand::store::Store;
use errand::{
    Job, JobContext, JobError, JobOptions, JobState, ListFilter, Outcome, SqliteStore, Worker,
    WorkerHandle,
};
use serde::{Deserialize, Serialize};

/// Which worker this is (the application state handed to its jobs).
#[derive(Clone)]
struct Node(&'static str);

/// Sends the activity digest of one team.
#[derive(Serialize, Deserialize)]
struct SendDigest {
    team: String,
}

impl Job for SendDigest {
    const KIND: &'static str = "send_digest";
    const QUEUE: &'static str = "cron-example";
    type State = Node;

    async fn run(self, cx: JobContext<Node>) -> Result<Outcome, JobError> {
        println!(
            "  tick {}  digest for {:<5} ran on {}  (job {})",
            cx.scheduled_at().format("%H:%M:%S"),
            self.team,
            cx.state().0,
            cx.job_id()
        );
        Ok(Outcome::Complete)
    }

    fn options(&self) -> JobOptions {
        JobOptions::new().max_attempts(3)
    }
}

/// Deletes expired sessions.
#[derive(Serialize, Deserialize)]
struct Cleanup;

impl Job for Cleanup {
    const KIND: &'static str = "cleanup";
    const QUEUE: &'static str = "cron-example";
    type State = Node;

    async fn run(self, _cx: JobContext<Node>) -> Result<Outcome, JobError> {
        Ok(Outcome::Complete)
    }
}

fn start(store: SqliteStore, node: &'static str) -> Result<WorkerHandle, errand::WorkerError> {
    Ok(Worker::builder(store, Node(node))
        .register::<SendDigest>()
        .register::<Cleanup>()
        .queue("cron-example", 4)
        // Six fields: seconds first. Five fields start at minutes; nicknames work too.
        .cron(
            "team-digest",
            "*/2 * * * * *",
            SendDigest {
                team: "core".into(),
            },
        )
        .cron("session-cleanup", "@hourly", Cleanup)
        .worker_id(node)
        .build()?
        .start())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("cron-example.db");
    let store = SqliteStore::open(path.to_str().expect("utf-8 temp dir")).await?;
    println!(
        "two workers on {}, both carrying the same cron entries:",
        path.display()
    );
    let a = start(store.clone(), "worker-a")?;
    let b = start(store.clone(), "worker-b")?;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(7)) => {}
        _ = errand::shutdown_signal() => {}
    }
    a.shutdown().await;
    b.shutdown().await;

    println!("\ncron jobs in the store (newest first):");
    let rows = store.list(&ListFilter::new().queue("cron-example")).await?;
    for row in rows.iter().take(8) {
        println!(
            "  {:<10} {:<12} {}",
            row.state.as_str(),
            row.kind,
            row.unique_key.as_deref().unwrap_or("")
        );
    }
    let waiting = rows
        .iter()
        .filter(|r| r.state == JobState::Scheduled)
        .count();
    println!(
        "({waiting} next ticks already enqueued: the digest's runs late, once, on the next start)"
    );
    Ok(())
}
