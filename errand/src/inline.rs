//! [`InlineClient`]: enqueue runs the job at once (Sidekiq's `Testing.inline!`, Oban's
//! `testing: :inline`), for tests; re-exported from [`crate::testing`].

use errand_core::Store;

use crate::{Client, DrainReport, EnqueueError, Enqueued, Job, JobOptions, Worker};

/// A client whose `enqueue` writes the job to the worker's store and then runs it at once,
/// with everything it leads to (retries without their backoff, jobs it enqueues), through
/// [`Worker::drain`]. The job goes through every step a worker takes — serialized, stored,
/// claimed, decoded, run, its outcome recorded — so what a test sees is what production
/// would do, only sooner.
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
/// let worker = Worker::builder(MemoryStore::new(), ()).register::<Welcome>().queue("default", 1).build()?;
/// let inline = errand::testing::InlineClient::new(&worker);
/// let (job, report) = inline.enqueue(Welcome { user: 7 }).await?;
/// assert_eq!(report.runs, vec![(job.id, JobState::Completed)]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct InlineClient<'w, S> {
    client: Client<S>,
    worker: &'w Worker<S>,
}

impl<'w, S: Store> InlineClient<'w, S> {
    /// Enqueues through `worker`'s store and runs with `worker`'s job types and state.
    pub fn new(worker: &'w Worker<S>) -> Self {
        InlineClient {
            client: Client::with_store(worker.shared_store()),
            worker,
        }
    }

    /// Enqueues `job` and runs it at once (with what it leads to); returns the enqueue's
    /// result and every run the drain made.
    pub async fn enqueue<J: Job>(&self, job: J) -> Result<(Enqueued, DrainReport), EnqueueError> {
        self.enqueue_with(job, JobOptions::new()).await
    }

    /// [`enqueue`](Self::enqueue) with this call's options. A run time in the future does
    /// not delay it: a drain skips delays.
    pub async fn enqueue_with<J: Job>(
        &self,
        job: J,
        opts: JobOptions,
    ) -> Result<(Enqueued, DrainReport), EnqueueError> {
        let enqueued = self.client.enqueue_with(job, opts).await?;
        let report = self.worker.drain().await?;
        Ok((enqueued, report))
    }

    /// The plain client underneath (enqueue without running).
    pub fn client(&self) -> &Client<S> {
        &self.client
    }
}
