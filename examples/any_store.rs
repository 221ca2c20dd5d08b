//! One binary, any store: the store comes from `DATABASE_URL` (SQLite by default), and a
//! signup and its welcome job are written in one transaction on either store.
//!
//! ```sh
//! cargo run --example any_store                                   # sqlite://any-store.db
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --example any_store
//! ```
//!
//! It signs up three users — the third signup fails after its job was enqueued, and its
//! transaction rolls back — then runs a worker until the welcome jobs are done: two mails,
//! none for the signup that never happened.

use std::time::Duration;

use errand::store::Store;
use errand::{AnyStore, Client, Job, JobContext, JobError, Outcome, Worker};
use serde::{Deserialize, Serialize};

/// Sends the welcome mail to a new user.
#[derive(Serialize, Deserialize)]
struct Welcome {
    email: String,
}

impl Job for Welcome {
    const KIND: &'static str = "welcome";
    type State = ();

    async fn run(self, _cx: JobContext<()>) -> Result<Outcome, JobError> {
        println!("  welcome mail sent to {}", self.email);
        Ok(Outcome::Complete)
    }
}

/// Records a user and enqueues their welcome mail in one transaction; `fail` aborts after
/// the enqueue, as a signup whose last step fails would.
async fn sign_up(
    store: &AnyStore,
    email: &str,
    fail: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let job = Welcome {
        email: email.into(),
    };
    if let Some(pg) = store.as_postgres() {
        let client = Client::new(pg.clone());
        let mut tx = pg.pool().begin().await?;
        sqlx::query("INSERT INTO any_store_users (email) VALUES ($1)")
            .bind(email)
            .execute(&mut *tx)
            .await?;
        client.enqueue_tx(&mut tx, job).await?;
        if fail {
            return Err("payment declined".into()); // the transaction rolls back on drop
        }
        tx.commit().await?;
    } else if let Some(lite) = store.as_sqlite() {
        let client = Client::new(lite.clone());
        let mut tx = lite.pool().begin().await?;
        sqlx::query("INSERT INTO any_store_users (email) VALUES (?)")
            .bind(email)
            .execute(&mut *tx)
            .await?;
        client.enqueue_tx(&mut tx, job).await?;
        if fail {
            return Err("payment declined".into());
        }
        tx.commit().await?;
    } else {
        Client::new(store.clone()).enqueue(job).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://any-store.db".into());
    let store = errand::connect(&url).await?;
    println!(
        "store: {} ({})",
        store.kind(),
        errand::store::redact_url(&url)
    );
    let users_table = "CREATE TABLE IF NOT EXISTS any_store_users (email TEXT NOT NULL)";
    if let Some(pg) = store.as_postgres() {
        sqlx::query(users_table).execute(pg.pool()).await?;
    } else if let Some(lite) = store.as_sqlite() {
        sqlx::query(users_table).execute(lite.pool()).await?;
    }
    for (email, fail) in [
        ("ada@example.com", false),
        ("bob@example.com", false),
        ("eve@example.com", true),
    ] {
        match sign_up(&store, email, fail).await {
            Ok(()) => println!("signed up {email}"),
            Err(e) => println!("signup of {email} failed ({e}): rolled back, no mail will go out"),
        }
    }
    let worker = Worker::builder(store.clone(), ())
        .register::<Welcome>()
        .queue("default", 4)
        .build()?
        .start();
    // Run until no welcome job waits any more (or Ctrl-C / SIGTERM).
    let waiting = errand::ListFilter::new()
        .kind(Welcome::KIND)
        .state(errand::JobState::Available)
        .state(errand::JobState::Running);
    tokio::select! {
        _ = async {
            while store.count(&waiting).await.unwrap_or(0) > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } => {}
        _ = errand::shutdown_signal() => {}
    }
    worker.shutdown().await;
    Ok(())
}

/// How an application tests its jobs with errand's testing kit: no worker running, no
/// waiting on the clock.
#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use errand::testing::{assert_enqueued, refute_enqueued};
    use errand::{Backoff, JobOptions, JobState};

    use super::*;

    async fn scratch() -> (AnyStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("app.db").display());
        let store = errand::connect(&url).await.unwrap();
        let lite = store.as_sqlite().unwrap();
        sqlx::query("CREATE TABLE any_store_users (email TEXT NOT NULL)")
            .execute(lite.pool())
            .await
            .unwrap();
        (store, dir)
    }

    /// The handler's job is enqueued with the signup; the failed signup's is not.
    #[tokio::test]
    async fn a_signup_enqueues_its_welcome_and_a_failed_one_does_not() {
        let (store, _dir) = scratch().await;
        sign_up(&store, "ada@example.com", false).await.unwrap();
        sign_up(&store, "eve@example.com", true).await.unwrap_err();
        assert_enqueued::<Welcome>(&store, |w| w.email == "ada@example.com").await;
        refute_enqueued::<Welcome>(&store, |w| w.email == "eve@example.com").await;
    }

    /// Mails through a server that is down for its first two attempts (an hour of backoff
    /// each), then enqueues the follow-up.
    #[derive(Serialize, Deserialize)]
    struct FlakyWelcome {
        email: String,
    }

    impl Job for FlakyWelcome {
        const KIND: &'static str = "flaky_welcome";
        type State = Client<Arc<dyn Store>>;

        async fn run(self, cx: JobContext<Self::State>) -> Result<Outcome, JobError> {
            if cx.attempt() <= 2 {
                return Err(JobError::msg("mail server unavailable"));
            }
            cx.state()
                .enqueue(FollowUp { email: self.email })
                .await
                .map_err(JobError::msg)?;
            Ok(Outcome::Complete)
        }

        fn options(&self) -> JobOptions {
            JobOptions::new().backoff(Backoff::constant(Duration::from_secs(3600)))
        }
    }

    /// The tips mail a day after the welcome.
    #[derive(Serialize, Deserialize)]
    struct FollowUp {
        email: String,
    }

    impl Job for FollowUp {
        const KIND: &'static str = "follow_up";
        type State = Client<Arc<dyn Store>>;

        async fn run(self, _cx: JobContext<Self::State>) -> Result<Outcome, JobError> {
            Ok(Outcome::Complete)
        }
    }

    /// `drain` runs the job, its two retries (their hours of backoff skipped) and the
    /// follow-up it enqueues, inline.
    #[tokio::test]
    async fn drain_runs_retries_and_follow_ups_without_waiting() {
        let (store, _dir) = scratch().await;
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let client = Client::new(shared);
        client
            .enqueue(FlakyWelcome {
                email: "ada@example.com".into(),
            })
            .await
            .unwrap();
        let worker = Worker::builder(store.clone(), client)
            .register::<FlakyWelcome>()
            .register::<FollowUp>()
            .queue("default", 1)
            .build()
            .unwrap();
        let began = Instant::now();
        let report = worker.drain().await.unwrap();
        let took = began.elapsed();
        let states: Vec<JobState> = report.runs.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            states,
            [
                JobState::Retryable,
                JobState::Retryable,
                JobState::Completed,
                JobState::Completed
            ],
            "{report:?}"
        );
        let job = store.get(report.runs[0].0).await.unwrap().unwrap();
        assert_eq!((job.attempt, job.errors.len()), (3, 2));
        // Not a speed target: two hours of backoff were skipped, not waited.
        println!("drained 4 runs in {took:?}");
    }
}
