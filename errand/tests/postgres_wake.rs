//! A job enqueued in the worker's own process wakes its producer once: while the process
//! listens, by the insert's own `NOTIFY` alone (waking it in-process too cost every job at low
//! rates a second, empty, claim and a look at the queue's record). Its own binary: it counts
//! the claim statements sqlx reports, with a global tracing subscriber.
#![cfg(feature = "postgres")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use errand::{Client, JobState};
use errand_postgres::testing::scratch_store;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

static CLAIMS: AtomicU64 = AtomicU64::new(0);

/// Counts sqlx's statement events that run a claim.
struct Claims;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Claims {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Statement(bool);
        impl tracing::field::Visit for Statement {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "db.statement" {
                    self.0 |= format!("{value:?}").contains("claim_ids");
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "db.statement" {
                    self.0 |= value.contains("claim_ids");
                }
            }
        }
        if event.metadata().target() == "sqlx::query" {
            let mut s = Statement(false);
            event.record(&mut s);
            if s.0 {
                CLAIMS.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_in_the_workers_process_costs_one_claim() {
    let subscriber = tracing_subscriber::registry().with(
        Claims.with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("sqlx::query", tracing::Level::TRACE),
        ),
    );
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let store = scratch_store().await;
    let client = Client::new(store.clone());
    let probe = Probe::default();
    let worker = started(store.clone(), probe.clone());
    wait_for("the worker to listen", Duration::from_secs(10), || async {
        store.is_listening()
    })
    .await;
    // Past the worker's start-up claims.
    let first = client.enqueue(Echo { n: 0 }).await.unwrap().id;
    wait_state(&store, first, JobState::Completed).await;
    let before = CLAIMS.load(Ordering::SeqCst);
    let jobs = 10u64;
    for n in 1..=jobs {
        let id = client.enqueue(Echo { n: n as u32 }).await.unwrap().id;
        wait_state(&store, id, JobState::Completed).await;
    }
    let claims = CLAIMS.load(Ordering::SeqCst) - before;
    worker.shutdown().await;
    assert!(
        claims >= jobs,
        "{claims} claims for {jobs} jobs: the count is not seeing them"
    );
    // One claim per job; a little slack for a claim that met a job just as it was written.
    assert!(
        claims <= jobs + 2,
        "{claims} claims for {jobs} jobs enqueued one at a time: woken twice per job"
    );
}
