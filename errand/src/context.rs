//! What a running job can see and use: its state, its row's facts, a blocking pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use errand_core::{ErrorRecord, JobId, JobRow, LeaseRef, Progress};
use tokio::time::Instant;

use crate::worker::Shared;
use crate::JobError;

/// At most one progress write per job per this interval: a job reporting in a tight loop
/// costs the store one write a second.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// What the runtime and a running job share about one attempt: whether the job completed
/// itself in a transaction, and its progress reports on their way to the store.
#[derive(Debug, Default)]
pub(crate) struct Attempt {
    /// Set once the job recorded its own completion in a transaction.
    pub(crate) completed: AtomicBool,
    /// The worker, to write progress with (none under `errand::testing`).
    shared: Option<Weak<Shared>>,
    throttle: Mutex<Throttle>,
}

#[derive(Debug, Default)]
struct Throttle {
    /// When the last report was written.
    written: Option<Instant>,
    /// The latest report not written yet (it came within the interval).
    pending: Option<Progress>,
}

impl Attempt {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        Attempt {
            shared: Some(Arc::downgrade(shared)),
            ..Attempt::default()
        }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a report: returns it when it is due for writing now.
    fn report(&self, progress: Progress) -> Option<Progress> {
        let mut t = self.throttle();
        if t.written.is_some_and(|w| w.elapsed() < PROGRESS_INTERVAL) {
            t.pending = Some(progress);
            return None;
        }
        t.written = Some(Instant::now());
        t.pending = None;
        Some(progress)
    }

    /// Writes the report held back by the throttle, if any: the store keeps the last one
    /// the job made. Called when the run ends, before its outcome is recorded.
    pub(crate) async fn flush(&self, lease: LeaseRef) {
        let pending = self.throttle().pending.take();
        if let Some(p) = pending {
            self.write(lease, &p).await;
        }
    }

    async fn write(&self, lease: LeaseRef, progress: &Progress) {
        let Some(shared) = self.shared.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        match shared.store.set_progress(lease, progress).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!(
                id = lease.id,
                "progress not stored: the attempt no longer holds the job"
            ),
            Err(e) => {
                shared.check_lost(&e);
                tracing::warn!(id = lease.id, error = %e, "progress not stored");
            }
        }
    }
}

/// Handed to [`crate::Job::run`]: the application state and facts about this attempt.
#[derive(Debug, Clone)]
pub struct JobContext<S> {
    state: S,
    row: Arc<JobRow>,
    attempt: Arc<Attempt>,
}

impl<S> JobContext<S> {
    pub(crate) fn new(state: S, row: Arc<JobRow>, attempt: Arc<Attempt>) -> Self {
        JobContext {
            state,
            row,
            attempt,
        }
    }

    /// The worker's store, when the job runs under a worker (not under `errand::testing`).
    pub(crate) fn shared_store(&self) -> Option<Arc<dyn errand_core::Store>> {
        let shared = self.attempt.shared.as_ref()?.upgrade()?;
        Some(shared.store.clone())
    }

    /// Reports how far the job got: `percent` (0–100; clamped, NaN records none) and what it
    /// is doing. Stored with the job, shown by `errand jobs show` and in
    /// [`JobRow::progress`](errand_core::JobRow::progress), kept after the job ends.
    ///
    /// Cheap to call often: at most one report per second is written
    /// ([`PROGRESS_INTERVAL`]); the others only replace the one held back, and the last
    /// report is written when the run ends. A report that cannot be written is logged,
    /// never an error of the job. Messages over 1 KiB are cut.
    ///
    /// ```
    /// # use errand::{JobContext, JobError, Outcome};
    /// async fn import(cx: JobContext<()>, rows: Vec<String>) -> Result<Outcome, JobError> {
    ///     for (i, _row) in rows.iter().enumerate() {
    ///         // …import the row…
    ///         let done = (i + 1) as f64 * 100.0 / rows.len() as f64;
    ///         cx.progress(done, format!("{} of {} rows", i + 1, rows.len())).await;
    ///     }
    ///     Ok(Outcome::Complete)
    /// }
    /// ```
    pub async fn progress(&self, percent: f64, message: impl Into<String>) {
        let at = match self.attempt.shared.as_ref().and_then(Weak::upgrade) {
            Some(shared) => shared.now().await,
            None => Utc::now(),
        };
        let report = Progress::new(self.row.attempt, at, percent, message);
        if let Some(due) = self.attempt.report(report) {
            self.attempt.write(self.lease(), &due).await;
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
            self.attempt.completed.store(true, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(i: u32) -> Progress {
        Progress::new(1, Utc::now(), f64::from(i), format!("step {i}"))
    }

    /// One write per interval: the first report goes out, the ones within the interval are
    /// held (each replacing the last), the first after it goes out, and the flush takes the
    /// held one.
    #[tokio::test(start_paused = true)]
    async fn reports_are_written_at_most_once_per_interval() {
        let attempt = Attempt::default();
        let mut written = Vec::new();
        for i in 0..100 {
            if let Some(p) = attempt.report(report(i)) {
                written.push(p.message);
            }
            tokio::time::advance(Duration::from_millis(25)).await;
        }
        // 100 reports over 2.5 s: at 0, 1.0 and 2.0 s.
        assert_eq!(written, ["step 0", "step 40", "step 80"]);
        let held = attempt.throttle().pending.clone().map(|p| p.message);
        assert_eq!(held.as_deref(), Some("step 99"));
    }

    #[test]
    fn hostile_reports_store_something_sane() {
        let p = Progress::new(1, Utc::now(), f64::NAN, "a\0b");
        assert_eq!((p.percent, p.message.as_str()), (None, "a\u{fffd}b"));
        assert_eq!(Progress::new(1, Utc::now(), -5.0, "").percent, Some(0.0));
        assert_eq!(
            Progress::new(1, Utc::now(), f64::INFINITY, "").percent,
            Some(100.0)
        );
        let long = Progress::new(1, Utc::now(), 1.0, "é".repeat(10_000));
        assert!(long.message.len() <= errand_core::MAX_PROGRESS_MESSAGE_LEN + '…'.len_utf8());
        assert!(long.message.ends_with('…'));
    }
}
