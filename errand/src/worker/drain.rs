//! Running a worker's jobs inline, for tests: [`Worker::drain`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use errand_core::{ClaimRequest, Finish, JobId, JobState, Store, StoreError};

use super::executor::{decide, run, RunResult};
use super::Worker;
use crate::context::Attempt;

/// Most runs one drain makes before it stops (a job that snoozes or retries forever).
const MAX_RUNS: usize = 100_000;

/// What [`Worker::drain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Runs made, in order: the job and the state its run left it in.
    pub runs: Vec<(JobId, JobState)>,
    /// Whether it stopped at its run limit (100,000) with jobs left.
    pub stopped_early: bool,
}

impl DrainReport {
    /// How many runs left their job in `state`.
    pub fn count(&self, state: JobState) -> usize {
        self.runs.iter().filter(|(_, s)| *s == state).count()
    }

    /// Runs by the state they left their job in.
    pub fn by_state(&self) -> BTreeMap<JobState, usize> {
        let mut m = BTreeMap::new();
        for (_, s) in &self.runs {
            *m.entry(*s).or_default() += 1;
        }
        m
    }
}

impl<S: Store> Worker<S> {
    /// Runs every job of this worker's queues inline, one at a time, until none is left —
    /// including jobs those jobs enqueue, scheduled ones (delays are skipped) and retries
    /// (backoffs are skipped) — and returns what each run did. For tests (Oban's
    /// `drain_queue`, Sidekiq's `drain`): no producer, heartbeat or maintenance runs, and
    /// the worker can still be started afterwards.
    ///
    /// ```
    /// # use errand::{Client, Job, JobContext, JobError, JobState, MemoryStore, Outcome, Worker};
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// struct Welcome { user: u64 }
    /// impl Job for Welcome {
    ///     const KIND: &'static str = "welcome";
    ///     type State = ();
    ///     async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::new();
    /// Client::new(store.clone()).enqueue(Welcome { user: 7 }).await?;
    /// let worker = Worker::builder(store, ()).register::<Welcome>().queue("default", 1).build()?;
    /// let report = worker.drain().await?;
    /// assert_eq!(report.count(JobState::Completed), 1);
    /// # Ok(()) }
    /// ```
    pub async fn drain(&self) -> Result<DrainReport, StoreError> {
        let shared = &self.shared;
        let store = &*shared.store;
        let mut report = DrainReport::default();
        loop {
            // Delays and backoffs skipped: everything waiting is due.
            let far = errand_core::later(shared.now().await, errand_core::MAX_DELAY);
            store.promote_due(far, u32::MAX).await?;
            let mut ran = false;
            for q in &self.queues {
                let rows = store
                    .claim(&ClaimRequest {
                        queue: q.name.clone(),
                        limit: 100,
                        worker_id: shared.worker_id.clone(),
                        now: shared.now().await,
                        lease: shared.config.lease,
                        held: None,
                    })
                    .await?;
                for row in rows {
                    ran = true;
                    if report.runs.len() >= MAX_RUNS {
                        report.stopped_early = true;
                        store
                            .release(&[row.lease_ref()], shared.now().await)
                            .await?;
                        continue;
                    }
                    let lease = row.lease_ref();
                    shared.inflight.claimed(lease);
                    let row = Arc::new(row);
                    let attempt = Arc::new(Attempt::new(shared));
                    let span = tracing::info_span!("errand.drain", kind = %row.kind, id = row.id);
                    let result = run(shared, &row, span, attempt.clone()).await;
                    if result.is_some() {
                        attempt.flush(lease).await;
                    }
                    // As the executor: a job that completed itself and returned Ok is done;
                    // any other ending is recorded (fenced, so a committed one is unchanged).
                    let self_completed = attempt.completed.load(Ordering::SeqCst)
                        && matches!(result, Some(RunResult::Returned(Ok(_))));
                    if !self_completed {
                        if let Some(result) = result {
                            let now = shared.now().await;
                            let backoff = shared.config.default_backoff;
                            let action = decide(&row, result, now, backoff, 0.5);
                            store
                                .finish(&[Finish {
                                    lease,
                                    at: now,
                                    action,
                                }])
                                .await?;
                        }
                    }
                    shared.inflight.recorded([lease]);
                    let state = store
                        .get(row.id)
                        .await?
                        .map_or(JobState::Completed, |r| r.state);
                    report.runs.push((row.id, state));
                }
            }
            if !ran || report.stopped_early {
                return Ok(report);
            }
        }
    }
}
