//! Postgres-only behaviour: transactional enqueue and completion, wake-ups across stores
//! through LISTEN/NOTIFY, pool discipline, and recovery from lost connections.
#![cfg(feature = "postgres")]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use errand::store::Store;
use errand::{Client, Job, JobContext, JobError, JobState, ListFilter, Outcome, PgStore, Worker};
use errand_postgres::testing::{database_url, scratch_store};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A second store on the same schema with its own pool and wake-ups: as another process
/// would see the database. `app` names its connections for `pg_terminate_backend`.
async fn same_schema(store: &PgStore, app: &str, pool_size: u32) -> PgStore {
    let opts: PgConnectOptions = database_url().parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .connect_with(opts.application_name(app))
        .await
        .unwrap();
    PgStore::builder()
        .pool(pool)
        .schema(store.schema())
        .open()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_tx_is_visible_only_after_commit() {
    let store = scratch_store().await;
    let client = Client::new(store.clone());
    let mut tx = store.pool().begin().await.unwrap();
    let rolled_back = client.enqueue_tx(&mut tx, Echo { n: 1 }).await.unwrap();
    tx.rollback().await.unwrap();
    assert!(
        store.get(rolled_back.id).await.unwrap().is_none(),
        "rolled back: no job"
    );

    let mut tx = store.pool().begin().await.unwrap();
    let committed = client
        .enqueue_many_tx(&mut tx, (0..3).map(|n| Echo { n }))
        .await
        .unwrap();
    let outside = Client::new(same_schema(&store, "errand-outside", 2).await);
    assert_eq!(
        outside.count(&ListFilter::new()).await.unwrap(),
        0,
        "uncommitted jobs are invisible to others"
    );
    tx.commit().await.unwrap();
    assert_eq!(outside.count(&ListFilter::new()).await.unwrap(), 3);

    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 2)
        .build()
        .unwrap()
        .start();
    for e in &committed {
        wait_state(&store, e.id, JobState::Completed).await;
        assert_eq!(probe.runs(e.id), 1);
    }
    worker.shutdown().await;
}

/// A batch past 5,000 goes by `COPY` (errand-postgres `copy.rs`) in a savepoint of the
/// application's transaction: rolled back with it, visible only once it commits, then run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_batch_follows_the_application_transaction() {
    let store = scratch_store().await;
    let client = Client::new(store.clone());
    let mut tx = store.pool().begin().await.unwrap();
    let rolled_back = client
        .enqueue_many_tx(&mut tx, (0..6000).map(|n| Echo { n }))
        .await
        .unwrap();
    assert_eq!(rolled_back.len(), 6000);
    tx.rollback().await.unwrap();
    assert_eq!(
        client.count(&ListFilter::new()).await.unwrap(),
        0,
        "rolled back: no job"
    );

    let mut tx = store.pool().begin().await.unwrap();
    let committed = client
        .enqueue_many_tx(&mut tx, (0..6000).map(|n| Echo { n }))
        .await
        .unwrap();
    // The transaction goes on after the copy.
    let one_more = client.enqueue_tx(&mut tx, Echo { n: 6000 }).await.unwrap();
    assert!(one_more.id > committed[5999].id);
    assert_eq!(
        client.count(&ListFilter::new()).await.unwrap(),
        0,
        "not yet committed"
    );
    tx.commit().await.unwrap();
    assert_eq!(client.count(&ListFilter::new()).await.unwrap(), 6001);
    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 20)
        .build()
        .unwrap()
        .start();
    for e in committed.iter().step_by(599) {
        wait_state(&store, e.id, JobState::Completed).await;
        assert_eq!(probe.runs(e.id), 1);
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_key_returns_the_existing_job() {
    let store = scratch_store().await;
    let client = Client::new(store.clone());
    let opts = errand::JobOptions::new().unique_key("report:2026-11-23");
    let first = client
        .enqueue_with(Echo { n: 1 }, opts.clone())
        .await
        .unwrap();
    let second = client
        .enqueue_with(Echo { n: 2 }, opts.clone())
        .await
        .unwrap();
    assert!(first.inserted && !second.inserted);
    assert_eq!(first.id, second.id);
    let mut tx = store.pool().begin().await.unwrap();
    let in_tx = client
        .enqueue_with_tx(&mut tx, Echo { n: 3 }, opts)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!((in_tx.id, in_tx.inserted), (first.id, false));
}

/// Writes a row in the job's own table and completes in the same transaction.
#[derive(Serialize, Deserialize)]
struct Invoice {
    amount: i64,
}

impl Job for Invoice {
    const KIND: &'static str = "invoice";
    type State = (PgStore, Arc<AtomicU32>);
    async fn run(self, cx: JobContext<Self::State>) -> Result<Outcome, JobError> {
        let (store, runs) = cx.state();
        runs.fetch_add(1, Ordering::SeqCst);
        let mut tx = store.pool().begin().await?;
        sqlx::query(&format!(
            "INSERT INTO \"{}\".invoices (job_id, amount) VALUES ($1, $2)",
            store.schema()
        ))
        .bind(cx.job_id())
        .bind(self.amount)
        .execute(&mut *tx)
        .await?;
        cx.complete_in(store, &mut tx).await?;
        tx.commit().await?;
        Ok(Outcome::Complete)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_completes_in_its_own_transaction() {
    let store = scratch_store().await;
    sqlx::query(&format!(
        "CREATE TABLE \"{}\".invoices (job_id bigint PRIMARY KEY, amount bigint NOT NULL)",
        store.schema()
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let client = Client::new(store.clone());
    let ids: Vec<_> = client
        .enqueue_many((1..=20).map(|amount| Invoice { amount }))
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let worker = Worker::builder(store.clone(), (store.clone(), runs.clone()))
        .register::<Invoice>()
        .queue("default", 4)
        .build()
        .unwrap()
        .start();
    for e in &ids {
        let row = wait_state(&store, e.id, JobState::Completed).await;
        assert_eq!(row.attempt, 1);
        assert!(row.errors.is_empty());
    }
    worker.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 20, "each job ran once");
    let (rows, total): (i64, Option<i64>) = sqlx::query_as(&format!(
        "SELECT count(*), sum(amount)::bigint FROM \"{}\".invoices",
        store.schema()
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((rows, total), (20, Some(210)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_a_worker_in_another_process_quickly() {
    let store = scratch_store().await;
    // The worker's store has its own pool and signals: only NOTIFY can wake it.
    let worker_store = same_schema(&store, "errand-latency", 4).await;
    let worker = builder(worker_store.clone(), Probe::default())
        .queue("default", 4)
        .poll_interval(Duration::from_secs(30)) // so a wake-up cannot be a poll
        .build()
        .unwrap()
        .start();
    let client = Client::new(store.clone());
    // Let the LISTEN connection come up before measuring.
    let warm = client.enqueue(Echo { n: 0 }).await.unwrap().id;
    wait_state(&store, warm, JobState::Completed).await;
    let mut latencies = Vec::new();
    for n in 0..40 {
        let id = client.enqueue(Echo { n }).await.unwrap().id;
        let row = wait_state(&store, id, JobState::Completed).await;
        let ms = (row.attempted_at.unwrap() - row.created_at)
            .num_microseconds()
            .unwrap() as f64
            / 1e3;
        latencies.push(ms);
        tokio::time::sleep(Duration::from_millis(5 + u64::from(n % 4) * 5)).await;
    }
    // A batch wakes it the same way (its notification is built by the client).
    let batch = client
        .enqueue_many((100..110).map(|n| Echo { n }))
        .await
        .unwrap();
    for job in &batch {
        let row = wait_state(&store, job.id, JobState::Completed).await;
        let ms = (row.attempted_at.unwrap() - row.created_at).num_milliseconds();
        assert!(ms < 10_000, "a batch job waited for the poll: {ms} ms");
    }
    worker.shutdown().await;
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    eprintln!(
        "enqueue→start latency over NOTIFY, idle worker: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        p(0.5),
        p(0.95),
        p(1.0)
    );
    // Every job started long before the 30 s poll: it was the notification that woke it.
    assert!(
        p(1.0) < 10_000.0,
        "a job waited for the poll: {latencies:?}"
    );
}

/// Each job holds a pool connection for a few milliseconds.
#[derive(Serialize, Deserialize)]
struct UsesPool;

impl Job for UsesPool {
    const KIND: &'static str = "uses_pool";
    type State = PgStore;
    async fn run(self, cx: JobContext<PgStore>) -> Result<Outcome, JobError> {
        sqlx::query("SELECT pg_sleep(0.005)")
            .execute(cx.state().pool())
            .await?;
        Ok(Outcome::Complete)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_far_above_pool_size_does_not_stall() {
    let store = scratch_store().await;
    let small = same_schema(&store, "errand-small-pool", 10).await;
    let client = Client::new(store.clone());
    client
        .enqueue_many((0..2000).map(|_| UsesPool))
        .await
        .unwrap();
    let worker = Worker::builder(small.clone(), small.clone())
        .register::<UsesPool>()
        .queue("default", 200)
        .build()
        .unwrap()
        .start();
    wait_for(
        "2,000 jobs on 200 slots and 10 connections",
        Duration::from_secs(120),
        || async {
            client
                .count(&ListFilter::new().state(JobState::Completed))
                .await
                .unwrap_or(0)
                == 2000
        },
    )
    .await;
    worker.shutdown().await;
    assert_eq!(
        client
            .count(&ListFilter::new().state(JobState::Discarded))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_recovers_after_its_connections_are_terminated() {
    let store = scratch_store().await;
    let victim = same_schema(&store, "errand-victim", 4).await;
    let client = Client::new(store.clone());
    client
        .enqueue_many((0..300).map(|_| Sleeper { ms: 20 }))
        .await
        .unwrap();
    let worker = builder(victim.clone(), Probe::default())
        .queue("default", 8)
        .build()
        .unwrap()
        .start();
    wait_for("some jobs done", Duration::from_secs(30), || async {
        client
            .count(&ListFilter::new().state(JobState::Completed))
            .await
            .unwrap_or(0)
            >= 50
    })
    .await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name IN ('errand-victim', 'errand-victim:listen')",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(!killed.is_empty(), "terminated the worker's connections");
    wait_for(
        "all 300 jobs final after the connections died",
        Duration::from_secs(90),
        || async {
            client
                .count(&ListFilter::new().state(JobState::Completed))
                .await
                .unwrap_or(0)
                == 300
        },
    )
    .await;
    worker.shutdown().await;
    eprintln!(
        "terminated {} worker connections mid-run; all 300 jobs completed",
        killed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_reconnects_after_its_connection_is_terminated() {
    let store = scratch_store().await;
    let worker_store = same_schema(&store, "errand-relisten", 4).await;
    let worker = builder(worker_store.clone(), Probe::default())
        .queue("default", 2)
        .poll_interval(Duration::from_secs(60)) // only a notification can wake it in time
        .build()
        .unwrap()
        .start();
    let client = Client::new(store.clone());
    let first = client.enqueue(Echo { n: 1 }).await.unwrap().id;
    wait_state(&store, first, JobState::Completed).await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'errand-relisten:listen'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(killed, vec![true], "terminated the LISTEN connection");
    // Jobs enqueued after the drop are picked up once the listener is back, long before
    // the 60 s poll.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let id = client.enqueue(Echo { n: 2 }).await.unwrap().id;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if store.get(id).await.unwrap().unwrap().state == JobState::Completed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no wake-up 20 s after the LISTEN connection died"
        );
    }
    worker.shutdown().await;
}

/// The database clock is read on the transaction's own connection: on a pool of one
/// connection, held by the transaction, reading it from the pool would wait for the pool's
/// acquire timeout (issue 12, section 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_tx_on_a_one_connection_pool_does_not_wait_for_the_pool() {
    let base = scratch_store().await;
    let store = same_schema(&base, "errand_one_conn", 1).await;
    let client = Client::new(store.clone());
    let mut tx = store.pool().begin().await.unwrap();
    let enqueued = tokio::time::timeout(
        Duration::from_secs(5),
        client.enqueue_tx(&mut tx, Echo { n: 1 }),
    )
    .await
    .expect("enqueue_tx waited for a second connection")
    .unwrap();
    tx.commit().await.unwrap();
    let row = store.get(enqueued.id).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Available);
}

/// A retry due at once is announced to other processes: the store that records the outcome
/// sends the `NOTIFY` (issue 13: the completer's in-process wake-up never left the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_due_at_once_wakes_other_processes() {
    use errand::store::{ClaimRequest, ErrorRecord, Finish, FinishAction};
    let store = scratch_store().await;
    let other = same_schema(&store, "errand-other-process", 2).await;
    other.listen();
    let woken = other.signals().get("default");
    let fired = |n: Arc<tokio::sync::Notify>| async move {
        tokio::time::timeout(Duration::from_millis(300), n.notified())
            .await
            .is_ok()
    };
    let client = Client::new(store.clone());
    // Until the other process's LISTEN is up, inserts may go unheard: insert until one is.
    wait_for(
        "the other process to hear an insert",
        Duration::from_secs(10),
        || {
            let (client, woken) = (client.clone(), woken.clone());
            async move {
                client.enqueue(Echo { n: 0 }).await.unwrap();
                fired(woken).await
            }
        },
    )
    .await;
    let claimed = store
        .claim(&ClaimRequest {
            queue: "default".into(),
            limit: 1,
            worker_id: "w".into(),
            now: chrono::Utc::now(),
            lease: Duration::from_secs(30),
            held: None,
        })
        .await
        .unwrap();
    while fired(woken.clone()).await {}
    let now = chrono::Utc::now();
    store
        .finish(&[Finish {
            lease: claimed[0].lease_ref(),
            at: now,
            action: FinishAction::Retry {
                run_at: now,
                error: ErrorRecord::new(1, now, "again"),
            },
        }])
        .await
        .unwrap();
    assert!(
        fired(woken.clone()).await,
        "the other process did not hear of the job made available"
    );
}
