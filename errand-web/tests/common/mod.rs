//! Stores seeded with jobs in every state (some carrying hostile text), for the dashboard's
//! HTTP and browser tests.
#![allow(dead_code, unreachable_pub, unused_macros)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use errand::store::{ClaimRequest, ErrorRecord, Finish, FinishAction, NewJob, Store};
use errand::{JobId, JobRow};

/// Expands each named `async fn(Arc<dyn Store>)` into one test per store, each on a fresh
/// one: `memory`, `sqlite` (a real file) and `postgres` (a schema of its own).
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name(std::sync::Arc::new(errand::MemoryStore::new())).await;
            }
            #[tokio::test]
            async fn sqlite() {
                let (store, _dir) = super::common::sqlite().await;
                super::$name(store).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::common::postgres().await).await;
            }
        }
    )*};
}

/// Text that would run if it were ever rendered as HTML.
pub const XSS: &str = "\"><img src=x onerror=alert(1)><script>alert('xss')</script>";

/// The ids of the seeded jobs worth looking at.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub available: Vec<JobId>,
    pub scheduled: JobId,
    pub running: JobId,
    pub retryable: JobId,
    pub completed: JobId,
    pub discarded: JobId,
    pub cancelled: JobId,
    /// A discarded job whose args, tag and error all carry [`XSS`].
    pub hostile: JobId,
}

pub fn job(kind: &str, queue: &str, args: &str, run_at: DateTime<Utc>) -> NewJob {
    NewJob {
        kind: kind.to_owned(),
        queue: queue.to_owned(),
        args: args.to_owned(),
        priority: 0,
        max_attempts: 3,
        run_at,
        tags: vec!["seed".into()],
        unique_key: None,
        unique_states: Default::default(),
        unique_for_ms: None,
        backoff: None,
        timeout_ms: None,
        partition_key: None,
    }
}

async fn insert(store: &dyn Store, j: NewJob, now: DateTime<Utc>) -> JobId {
    store.insert(vec![j], now).await.expect("insert")[0].id
}

/// Claims up to `limit` jobs of `queue` at `now` (an hour's lease).
pub async fn claim(store: &dyn Store, queue: &str, limit: u32, now: DateTime<Utc>) -> Vec<JobRow> {
    let req = ClaimRequest {
        queue: queue.to_owned(),
        limit,
        worker_id: "seed-worker".into(),
        now,
        lease: Duration::from_secs(3600),
        held: None,
    };
    store.claim(&req).await.expect("claim")
}

async fn claim_one(store: &dyn Store, queue: &str, now: DateTime<Utc>) -> JobRow {
    claim(store, queue, 1, now)
        .await
        .pop()
        .expect("a job to claim")
}

/// Ends `row`'s attempt at `now` with `action`.
pub async fn end(store: &dyn Store, row: &JobRow, now: DateTime<Utc>, action: FinishAction) {
    let f = Finish {
        lease: row.lease_ref(),
        at: now,
        action,
    };
    assert_eq!(store.finish(&[f]).await.expect("finish").len(), 1);
}

/// Seeds `store`: queue `mail` with three available jobs; queue `reports` with one job in
/// each other state; queue `hostile` with a discarded job carrying [`XSS`] everywhere.
pub async fn seed(store: &dyn Store) -> Seeded {
    let now = store.now(Utc::now()).await;
    let mut available = Vec::new();
    for i in 0..3 {
        available.push(
            insert(
                store,
                job(
                    "SendEmail",
                    "mail",
                    &format!(r#"{{"to":"user{i}@example.com"}}"#),
                    now,
                ),
                now,
            )
            .await,
        );
    }
    let scheduled = insert(
        store,
        job(
            "Report",
            "reports",
            r#"{"day":"monday"}"#,
            now + chrono::Duration::hours(1),
        ),
        now,
    )
    .await;
    // One at a time: each claim takes the only available job of its queue.
    let running = insert(
        store,
        job("Report", "reports", r#"{"day":"tuesday"}"#, now),
        now,
    )
    .await;
    let r = claim_one(store, "reports", now).await;
    assert_eq!(r.id, running);

    let retryable = insert(
        store,
        job("Report", "reports", r#"{"day":"wednesday"}"#, now),
        now,
    )
    .await;
    let r = claim_one(store, "reports", now).await;
    assert_eq!(r.id, retryable);
    let error = ErrorRecord::new(r.attempt, now, "connection reset by peer");
    end(
        store,
        &r,
        now,
        FinishAction::Retry {
            run_at: now + chrono::Duration::hours(1),
            error,
        },
    )
    .await;

    let completed = insert(
        store,
        job("Report", "reports", r#"{"day":"thursday"}"#, now),
        now,
    )
    .await;
    let r = claim_one(store, "reports", now).await;
    end(
        store,
        &r,
        now,
        FinishAction::CompleteWith {
            result: r#"{"rows":42}"#.into(),
        },
    )
    .await;

    let discarded = insert(
        store,
        job("Report", "reports", r#"{"day":"friday"}"#, now),
        now,
    )
    .await;
    let r = claim_one(store, "reports", now).await;
    let error = ErrorRecord::new(r.attempt, now, "report template missing");
    end(store, &r, now, FinishAction::Discard { error }).await;

    let cancelled = insert(
        store,
        job("Report", "reports", r#"{"day":"saturday"}"#, now),
        now,
    )
    .await;
    store.cancel(cancelled, now).await.expect("cancel");

    let mut h = job(
        XSS,
        "hostile",
        &serde_json::json!({ "html": XSS }).to_string(),
        now,
    );
    h.tags = vec![XSS.into()];
    let hostile = insert(store, h, now).await;
    let r = claim_one(store, "hostile", now).await;
    let error = ErrorRecord::new(r.attempt, now, XSS);
    end(store, &r, now, FinishAction::Discard { error }).await;

    // What the maintenance leader's tally does every few seconds.
    store
        .tally_finished(
            now + chrono::TimeDelta::seconds(1),
            Duration::from_secs(3600),
        )
        .await
        .expect("tally");
    Seeded {
        available,
        scheduled,
        running,
        retryable,
        completed,
        discarded,
        cancelled,
        hostile,
    }
}

/// A fresh SQLite file store (kept alive by the returned folder).
pub async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("errand.db").display());
    let store = errand::AnyStore::builder(&url)
        .migrate(true)
        .open()
        .await
        .expect("open SQLite");
    (Arc::new(store), dir)
}

/// A fresh Postgres schema.
pub async fn postgres() -> Arc<dyn Store> {
    Arc::new(errand_postgres::testing::scratch_store().await)
}
