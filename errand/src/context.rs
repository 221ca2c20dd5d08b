//! What a running job can see and use: its state, its row's facts, a blocking pool.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use errand_core::{ErrorRecord, JobId, JobRow, LeaseRef};

use crate::JobError;

/// Handed to [`crate::Job::run`]: the application state and facts about this attempt.
#[derive(Debug, Clone)]
pub struct JobContext<S> {
    state: S,
    row: Arc<JobRow>,
    /// Set once the job recorded its own completion in a transaction.
    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    completed: Arc<AtomicBool>,
}

impl<S> JobContext<S> {
    pub(crate) fn new(state: S, row: Arc<JobRow>, completed: Arc<AtomicBool>) -> Self {
        JobContext {
            state,
            row,
            completed,
        }
    }

    /// This attempt's fencing reference (job id and attempt number): a store applies a
    /// change to the running job only while this attempt still holds it.
    pub(crate) fn lease(&self) -> LeaseRef {
        self.row.lease_ref()
    }

    /// Marks this attempt completed inside the application's transaction, together with
    /// the job's own writes, on SQLite or Postgres (the store's database): commit and the job
    /// never runs again — exactly once for work in the same database.
    ///
    /// Fails when the attempt no longer holds the job (cancelled, or rescued after a lost
    /// lease): return the error and let the transaction roll back. If the commit then fails,
    /// the job stays `running` until its lease runs out and the rescuer returns it.
    ///
    /// ```no_run
    /// # use errand::{JobContext, JobError, Outcome, SqliteStore};
    /// # async fn run(cx: JobContext<SqliteStore>) -> Result<Outcome, JobError> {
    /// let store = cx.state();
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO invoices (id) VALUES (?)").bind(cx.job_id()).execute(&mut *tx).await?;
    /// cx.complete_in(store, &mut tx).await?;
    /// tx.commit().await?;
    /// Ok(Outcome::Complete)
    /// # }
    /// ```
    pub async fn complete_in<T: crate::TxStore>(
        &self,
        store: &T,
        conn: &mut T::Connection,
    ) -> Result<(), JobError> {
        if store.tx_complete(conn, self.lease()).await? {
            self.completed
                .store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        } else {
            Err(JobError::msg(format!(
                "job {} attempt {} no longer holds its lease (cancelled or rescued): roll back",
                self.row.id, self.row.attempt
            )))
        }
    }

    /// The application state given to the worker.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// This job's id.
    pub fn job_id(&self) -> JobId {
        self.row.id
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> i32 {
        self.row.attempt
    }

    /// Attempts allowed in all.
    pub fn max_attempts(&self) -> i32 {
        self.row.max_attempts
    }

    /// Whether a failure now would discard the job instead of retrying it.
    pub fn is_last_attempt(&self) -> bool {
        self.row.attempt >= self.row.max_attempts
    }

    /// The queue it runs on.
    pub fn queue(&self) -> &str {
        &self.row.queue
    }

    /// The job's kind.
    pub fn kind(&self) -> &str {
        &self.row.kind
    }

    /// When the job was enqueued.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }

    /// When this attempt was due: the enqueue time or the requested run time on the first
    /// attempt (for a cron job, its tick), a retry's or snooze's time after that.
    pub fn scheduled_at(&self) -> DateTime<Utc> {
        self.row.run_at
    }

    /// Failures of earlier attempts, oldest first.
    pub fn errors(&self) -> &[ErrorRecord] {
        &self.row.errors
    }

    /// The job's tags.
    pub fn tags(&self) -> &[String] {
        &self.row.tags
    }

    /// Runs CPU-heavy or blocking code on tokio's blocking pool, so async jobs on the same
    /// runtime keep their latency. A panic inside `f` becomes a [`JobError`] with the panic
    /// message (the job is retried by policy).
    ///
    /// A job timeout stops waiting for `f` but cannot stop the thread: keep blocking work
    /// bounded.
    ///
    /// ```
    /// # use errand::{JobContext, JobError, Outcome};
    /// async fn checksum(cx: JobContext<()>, pixels: Vec<u8>) -> Result<Outcome, JobError> {
    ///     // A long computation: on the blocking pool, not on the runtime's threads.
    ///     let sum = cx
    ///         .blocking(move || pixels.iter().map(|&p| u64::from(p)).sum::<u64>())
    ///         .await?;
    ///     if sum == 0 {
    ///         return Err(JobError::discard("blank image: nothing to do"));
    ///     }
    ///     Ok(Outcome::Complete)
    /// }
    /// ```
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, JobError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        tokio::task::spawn_blocking(f).await.map_err(|e| {
            if e.is_panic() {
                JobError::msg(format!(
                    "blocking task panicked: {}",
                    crate::worker::panic_message(e.into_panic().as_ref())
                ))
            } else {
                JobError::msg("blocking task was cancelled (runtime shutting down)")
            }
        })
    }
}
