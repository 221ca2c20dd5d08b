//! The README's usage example as a program: `cargo run --example readme` enqueues 102 mails
//! into `errand.db` and works them until Ctrl-C or SIGTERM. A test in `lib.rs` checks that
//! the README shows this code, line for line.
#![allow(unused_variables)] // `cx`, as the README shows it

use errand::{Client, Job, JobContext, JobError, JobOptions, Outcome, SqliteStore, Worker};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone)]
#[rustfmt::skip] // kept as the README shows it
struct AppState { /* your pools, clients, config */ }

#[derive(Serialize, Deserialize)]
#[rustfmt::skip] // kept as the README shows it
struct SendEmail { to: String }

#[rustfmt::skip] // kept as the README shows it
impl Job for SendEmail {
    const KIND: &'static str = "send_email";
    const QUEUE: &'static str = "mail";                      // default: "default"
    type State = AppState;
    async fn run(self, cx: JobContext<AppState>) -> Result<Outcome, JobError> {
        // send the mail; `?` on any error retries the job with backoff
        Ok(Outcome::Complete)
    }
    fn options(&self) -> JobOptions { JobOptions::new().max_attempts(5) }
}

#[tokio::main]
#[rustfmt::skip] // kept as the README shows it
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open("errand.db").await?;          // creates and migrates the file
    let client = Client::new(store.clone());
    client.enqueue(SendEmail { to: "a@b.c".into() }).await?;
    client.enqueue_with(SendEmail { to: "d@e.f".into() },     // the same options type, per call
                        JobOptions::new().delay(Duration::from_secs(60)).priority(1)).await?;
    client.enqueue_many((0..100).map(|i| SendEmail { to: format!("u{i}@b.c") })).await?; // one round trip

    Worker::builder(store, AppState {})
        .register::<SendEmail>()
        .queue("mail", 10)                                       // at most 10 mails at once
        .job_defaults(JobOptions::new().timeout(Duration::from_secs(300))) // for jobs that set none
        .build()?
        .run_until(errand::shutdown_signal())                    // SIGTERM or Ctrl-C: graceful shutdown
        .await?;
    Ok(())
}
