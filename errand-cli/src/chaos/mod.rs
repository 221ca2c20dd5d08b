//! A worker whose job records every run in a ledger table of the same database, so crash
//! tests (and later `errand chaos`) can count runs per job and prove none was lost.

use std::time::Duration;

use errand::store::Store;
use errand::{Job, JobContext, JobError, ListFilter, Outcome, Worker};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, SqlitePool};

use errand::AnyStore;

use crate::{open_store, CliError};

mod run;

pub use run::{chaos, print_report, ChaosArgs, ChaosReport};

/// The queue ledger jobs run on.
pub const CHAOS_QUEUE: &str = "chaos";

/// Where runs are recorded: a table next to the jobs.
#[derive(Debug, Clone)]
pub enum Ledger {
    /// `errand_ledger` in the SQLite file.
    Sqlite(SqlitePool),
    /// `"<schema>".ledger` in Postgres.
    Postgres {
        /// The store's pool.
        pool: PgPool,
        /// Qualified table name.
        table: String,
    },
}

impl Ledger {
    /// The ledger of a store.
    pub fn of(store: &AnyStore) -> Ledger {
        match (store.as_postgres(), store.as_sqlite()) {
            (Some(s), _) => Ledger::Postgres {
                pool: s.pool().clone(),
                table: format!("\"{}\".ledger", s.schema()),
            },
            (_, Some(s)) => Ledger::Sqlite(s.pool().clone()),
            _ => unreachable!("the CLI opens SQLite and Postgres stores only"),
        }
    }

    /// Creates the table if needed.
    pub async fn ensure(&self) -> Result<(), sqlx::Error> {
        // `started_us` and `ended_us`: when the run began and ended, microseconds since the
        // epoch by this machine's clock (0: not recorded, as for a run killed midway): a
        // workflow step's start is checked against its dependencies' runs' ends, all read
        // from one clock (the stores' own times may come from the database's).
        let cols = "job_id bigint NOT NULL, attempt integer NOT NULL, pid bigint NOT NULL, \
                    started_us bigint NOT NULL DEFAULT 0, ended_us bigint NOT NULL DEFAULT 0";
        match self {
            Ledger::Sqlite(pool) => {
                sqlx::query(&format!(
                    "CREATE TABLE IF NOT EXISTS errand_ledger ({cols})"
                ))
                .execute(pool)
                .await?;
            }
            Ledger::Postgres { pool, table } => {
                sqlx::query(&format!("CREATE TABLE IF NOT EXISTS {table} ({cols})"))
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Every recorded run: (job id, attempt, worker pid).
    pub async fn runs(&self) -> Result<Vec<(i64, i32, i64)>, sqlx::Error> {
        match self {
            Ledger::Sqlite(pool) => {
                sqlx::query_as("SELECT job_id, attempt, pid FROM errand_ledger")
                    .fetch_all(pool)
                    .await
            }
            Ledger::Postgres { pool, table } => {
                sqlx::query_as(&format!("SELECT job_id, attempt, pid FROM {table}"))
                    .fetch_all(pool)
                    .await
            }
        }
    }

    /// Every recorded run with its times: (job id, attempt, start, end), in µs since the
    /// epoch (end 0: not recorded).
    pub async fn times(&self) -> Result<Vec<(i64, i32, i64, i64)>, sqlx::Error> {
        match self {
            Ledger::Sqlite(pool) => {
                sqlx::query_as("SELECT job_id, attempt, started_us, ended_us FROM errand_ledger")
                    .fetch_all(pool)
                    .await
            }
            Ledger::Postgres { pool, table } => {
                sqlx::query_as(&format!(
                    "SELECT job_id, attempt, started_us, ended_us FROM {table}"
                ))
                .fetch_all(pool)
                .await
            }
        }
    }

    async fn ended(&self, job: i64, attempt: i32) -> Result<(), sqlx::Error> {
        let pid = i64::from(std::process::id());
        let ended = chrono::Utc::now().timestamp_micros();
        match self {
            Ledger::Sqlite(pool) => {
                sqlx::query(
                    "UPDATE errand_ledger SET ended_us = ? \
                     WHERE job_id = ? AND attempt = ? AND pid = ?",
                )
                .bind(ended)
                .bind(job)
                .bind(attempt)
                .bind(pid)
                .execute(pool)
                .await?;
            }
            Ledger::Postgres { pool, table } => {
                sqlx::query(&format!(
                    "UPDATE {table} SET ended_us = $1 WHERE job_id = $2 AND attempt = $3 AND pid = $4"
                ))
                .bind(ended)
                .bind(job)
                .bind(attempt)
                .bind(pid)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    async fn record(&self, job: i64, attempt: i32) -> Result<(), sqlx::Error> {
        let pid = i64::from(std::process::id());
        let started = chrono::Utc::now().timestamp_micros();
        match self {
            Ledger::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO errand_ledger (job_id, attempt, pid, started_us) \
                     VALUES (?, ?, ?, ?)",
                )
                .bind(job)
                .bind(attempt)
                .bind(pid)
                .bind(started)
                .execute(pool)
                .await?;
            }
            Ledger::Postgres { pool, table } => {
                sqlx::query(&format!(
                    "INSERT INTO {table} (job_id, attempt, pid, started_us) VALUES ($1, $2, $3, $4)"
                ))
                .bind(job)
                .bind(attempt)
                .bind(pid)
                .bind(started)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }
}

/// Records its run in the ledger, then works `work_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerJob {
    /// Simulated work per run, in milliseconds.
    pub work_ms: u64,
}

/// What a ledger job needs.
#[derive(Debug, Clone)]
pub struct LedgerState {
    backend: AnyStore,
    ledger: Ledger,
    tx_complete: bool,
    abort_after_commit: bool,
}

impl Job for LedgerJob {
    const KIND: &'static str = "errand_ledger";
    const QUEUE: &'static str = CHAOS_QUEUE;
    type State = LedgerState;

    async fn run(self, cx: JobContext<LedgerState>) -> Result<Outcome, JobError> {
        let st = cx.state();
        match (st.backend.as_postgres(), &st.ledger, st.tx_complete) {
            (Some(store), Ledger::Postgres { table, .. }, true) => {
                // Exactly-once effect: the ledger row and the completion commit together.
                tokio::time::sleep(Duration::from_millis(self.work_ms)).await;
                let mut tx = store.pool().begin().await?;
                sqlx::query(&format!(
                    "INSERT INTO {table} (job_id, attempt, pid) VALUES ($1, $2, $3)"
                ))
                .bind(cx.job_id())
                .bind(cx.attempt())
                .bind(i64::from(std::process::id()))
                .execute(&mut *tx)
                .await?;
                cx.complete_in(store, &mut tx).await?;
                tx.commit().await?;
                if st.abort_after_commit {
                    // Simulates a crash between commit and anything else the worker does.
                    std::process::abort();
                }
            }
            _ => {
                st.ledger.record(cx.job_id(), cx.attempt()).await?;
                tokio::time::sleep(Duration::from_millis(self.work_ms)).await;
                // The run's end is a measurement, not the job's effect: a failure to write
                // it (a connection the chaos run cut) must not fail the job and run it
                // again. Tried a few times as the pool reconnects; left 0 (unknown) else.
                for wait_ms in [0, 50, 200, 500] {
                    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                    if st.ledger.ended(cx.job_id(), cx.attempt()).await.is_ok() {
                        break;
                    }
                }
            }
        }
        Ok(Outcome::Complete)
    }
}

/// `errand chaos-worker` options.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Jobs run at once.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Lease length in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub lease_ms: u64,
    /// The maintenance leader's lease in milliseconds (the leader runs the rescuer: a killed
    /// leader's own jobs wait for the next one, within 1⅓ of this).
    #[arg(long, default_value_t = 2_000)]
    pub leader_lease_ms: u64,
    /// Between this worker's reports to the worker registry, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub presence_ms: u64,
    /// Exit once no job of the chaos queue is left unfinished.
    #[arg(long)]
    pub exit_when_done: bool,
    /// Fallback poll interval in milliseconds (wake-ups come from inserts in this process and,
    /// on Postgres, from NOTIFY).
    #[arg(long, default_value_t = 1000)]
    pub poll_ms: u64,
    /// Grace period at shutdown (SIGINT or SIGTERM), in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub grace_ms: u64,
    /// Postgres: record the run and complete the job in one transaction.
    #[arg(long)]
    pub tx_complete: bool,
    /// With --tx-complete: abort the process right after the first commit.
    #[arg(long)]
    pub abort_after_commit: bool,
    /// Stop (as on SIGTERM) when standard input reaches its end: started with a pipe by
    /// another process (`errand bench --phases fleet`), the worker does not outlive it, even
    /// when that process is killed.
    #[arg(long)]
    pub exit_with_parent: bool,
}

/// Runs ledger jobs until done (or until Ctrl-C).
pub async fn run_worker(url: &str, schema: &str, args: WorkerArgs) -> Result<(), CliError> {
    let backend = open_store(url, schema, true).await?;
    let ledger = Ledger::of(&backend);
    // Workers started together race to create the table (Postgres' `IF NOT EXISTS` can
    // still fail on its catalog's unique index): the loser finds it made by the winner.
    if ledger.ensure().await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ledger
            .ensure()
            .await
            .map_err(errand::StoreError::database)?;
    }
    let store = std::sync::Arc::new(backend.clone());
    let lease = Duration::from_millis(args.lease_ms);
    let worker = Worker::builder(
        store.clone(),
        LedgerState {
            backend,
            ledger,
            tx_complete: args.tx_complete,
            abort_after_commit: args.abort_after_commit,
        },
    )
    .register::<LedgerJob>()
    .queue(CHAOS_QUEUE, args.concurrency)
    .lease(lease)
    .rescue_interval((lease / 4).max(Duration::from_millis(100)))
    .poll_interval(Duration::from_millis(args.poll_ms.max(1)))
    .grace_period(Duration::from_millis(args.grace_ms))
    .leader_lease(Duration::from_millis(args.leader_lease_ms))
    .presence_interval(Duration::from_millis(args.presence_ms))
    .build()?
    .start();
    if args.exit_when_done {
        let open = ListFilter::new().queue(CHAOS_QUEUE).unfinished();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if store.count(&open).await.unwrap_or(1) == 0 {
                break;
            }
        }
    } else if args.exit_with_parent {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = stdin_closed() => {}
        }
    } else {
        shutdown_signal().await;
    }
    let report = worker.shutdown().await;
    tracing::info!(released = report.released, "chaos worker stopped");
    Ok(())
}

/// Standard input reached its end or failed: the process holding its other end exited.
async fn stdin_closed() {
    let _ = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut buf = [0u8; 256];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
    })
    .await;
}

/// Ctrl-C (SIGINT) or SIGTERM, whichever comes first.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
