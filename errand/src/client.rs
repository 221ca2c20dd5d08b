//! Enqueueing jobs and operator lookups: the [`Client`].

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use errand_core::{
    CancelResult, DeleteResult, InsertResult, JobId, JobRow, ListFilter, NewJob, QueueLimits,
    QueueRecord, StateCount, Store, StoreError,
};

use crate::clock::Clock;
use crate::options::resolve;
use crate::payload;
use crate::{EnqueueError, Job, JobOptions};

/// Default largest serialized job accepted by a [`Client`]: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Enqueued {
    /// The job's id (for a duplicate unique key: the existing job's id).
    pub id: JobId,
    /// `false` when a job holding the same unique key existed and nothing was written.
    pub inserted: bool,
}

impl From<InsertResult> for Enqueued {
    fn from(r: InsertResult) -> Self {
        Enqueued {
            id: r.id,
            inserted: r.inserted,
        }
    }
}

/// A job of a [`Batch`], serialized, with its call's options; resolved at enqueue.
type BatchItem = Result<(Serialized, JobOptions), EnqueueError>;

/// Jobs of different types to enqueue in one round trip; see [`Client::enqueue_batch`].
#[derive(Debug, Default)]
pub struct Batch {
    items: Vec<(&'static str, BatchItem)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job with its type's options.
    pub fn add<J: Job>(&mut self, job: J) -> &mut Self {
        self.add_with(job, JobOptions::new())
    }

    /// Adds a job with overrides.
    pub fn add_with<J: Job>(&mut self, job: J, opts: JobOptions) -> &mut Self {
        self.items
            .push((J::KIND, serialize(job, usize::MAX).map(|s| (s, opts))));
        self
    }

    /// Jobs in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A job serialized and checked, with its type's options: resolved against the call's
/// options at the store's time (`Serialized::resolve`).
#[derive(Debug)]
pub(crate) struct Serialized {
    kind: &'static str,
    args: String,
    defaults: JobOptions,
}

impl Serialized {
    /// The row to insert, run times measured from `now` (the store's clock).
    pub(crate) fn resolve(
        self,
        opts: JobOptions,
        now: chrono::DateTime<Utc>,
    ) -> Result<NewJob, EnqueueError> {
        resolve(self.kind, self.args, self.defaults, opts, now)
    }
}

/// [`serialize`], then [`Serialized::resolve`].
pub(crate) fn prepare<J: Job>(
    job: J,
    opts: JobOptions,
    limit: usize,
    now: chrono::DateTime<Utc>,
) -> Result<NewJob, EnqueueError> {
    serialize(job, limit)?.resolve(opts, now)
}

/// [`prepare`] for each job with its type's options. (Sizing the vector up front instead
/// was measured: more system time for the fresh allocation than it saved in copies.)
pub(crate) fn prepare_all<J: Job>(
    jobs: impl IntoIterator<Item = J>,
    limit: usize,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<NewJob>, EnqueueError> {
    jobs.into_iter()
        .map(|j| prepare(j, JobOptions::new(), limit, now))
        .collect()
}

/// Serializes a job, refusing what would not round-trip through every store.
pub(crate) fn serialize<J: Job>(job: J, limit: usize) -> Result<Serialized, EnqueueError> {
    let defaults = job.options().over(JobOptions::new().queue(J::QUEUE));
    // Before serializing: a hostile depth must not recurse through serde_json first.
    payload::check(&job).map_err(|p| match p {
        payload::Problem::NonFinite { value, at } => EnqueueError::NonFiniteNumber {
            kind: J::KIND,
            value,
            at,
        },
        payload::Problem::TooDeep => EnqueueError::TooDeep {
            kind: J::KIND,
            limit: payload::MAX_PAYLOAD_DEPTH,
        },
        payload::Problem::Custom(m) => EnqueueError::Serialize {
            kind: J::KIND,
            source: <serde_json::Error as serde::ser::Error>::custom(m),
        },
    })?;
    let args = serde_json::to_string(&job).map_err(|source| EnqueueError::Serialize {
        kind: J::KIND,
        source,
    })?;
    if args.len() > limit {
        return Err(EnqueueError::PayloadTooLarge {
            kind: J::KIND,
            size: args.len(),
            limit,
        });
    }
    if has_escaped_nul(&args) {
        return Err(EnqueueError::NulInPayload { kind: J::KIND });
    }
    Ok(Serialized {
        kind: J::KIND,
        args,
        defaults,
    })
}

/// Whether JSON text holds the escape `\u0000` (serde_json writes a NUL in a string or key
/// as that; a raw NUL cannot appear). A `u0000` after an even run of backslashes is text.
pub(crate) fn has_escaped_nul(json: &str) -> bool {
    // Most payloads hold no escape at all: one byte search, not a substring search per job.
    if !json.as_bytes().contains(&b'\\') {
        return false;
    }
    let mut from = 0;
    while let Some(at) = json[from..].find("u0000") {
        let u = from + at;
        let slashes = json.as_bytes()[..u]
            .iter()
            .rev()
            .take_while(|&&c| c == b'\\')
            .count();
        if slashes % 2 == 1 {
            return true;
        }
        from = u + 1;
    }
    false
}

/// Enqueues jobs and looks them up. Cheap to clone; share one per application.
///
/// ```
/// # use errand::{Client, MemoryStore, Job, JobContext, JobError, Outcome, JobOptions};
/// # use serde::{Deserialize, Serialize};
/// # use std::time::Duration;
/// # #[derive(Serialize, Deserialize)] struct SendEmail { to: String }
/// # impl Job for SendEmail {
/// #     const KIND: &'static str = "send_email";
/// #     type State = ();
/// #     async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) }
/// # }
/// # async fn demo() -> Result<(), errand::EnqueueError> {
/// let client = Client::new(MemoryStore::new());
/// let job = client.enqueue(SendEmail { to: "a@b.c".into() }).await?;
/// client
///     .enqueue_with(SendEmail { to: "d@e.f".into() }, JobOptions::new().delay(Duration::from_secs(60)))
///     .await?;
/// client.enqueue_many((0..100).map(|i| SendEmail { to: format!("user{i}@b.c") })).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Client<S> {
    store: Arc<S>,
    max_payload_bytes: usize,
    clock: Clock,
    /// How often `wait` looks again where the store hears other processes (see
    /// `client_wait.rs`); tests lengthen it to show a wait was notified.
    pub(crate) heard_poll: std::time::Duration,
}

impl<S> Clone for Client<S> {
    fn clone(&self) -> Self {
        Client {
            store: self.store.clone(),
            max_payload_bytes: self.max_payload_bytes,
            clock: self.clock,
            heard_poll: self.heard_poll,
        }
    }
}

impl<S: Store> Client<S> {
    /// A client on `store`.
    pub fn new(store: S) -> Self {
        Self::with_store(Arc::new(store))
    }

    /// A client on a store already shared (a worker's).
    pub(crate) fn with_store(store: Arc<S>) -> Self {
        Client {
            store,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            clock: Clock::default(),
            heard_poll: crate::client_wait::HEARD_POLL,
        }
    }

    /// Sets how often [`Client::wait`] looks again on a store that notifies it (Postgres,
    /// memory): for tests showing that a wait was notified rather than polled.
    #[doc(hidden)]
    pub fn wait_poll(mut self, every: std::time::Duration) -> Self {
        self.heard_poll = every;
        self
    }

    /// Reads the time from tokio's clock, for tests with a paused clock: see
    /// [`WorkerBuilder::tokio_clock`](crate::WorkerBuilder::tokio_clock).
    pub fn tokio_clock(mut self) -> Self {
        self.clock = Clock::tokio();
        self
    }

    /// Largest serialized job accepted (default 1 MiB); larger ones fail with
    /// [`EnqueueError::PayloadTooLarge`].
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    pub(crate) fn payload_limit(&self) -> usize {
        self.max_payload_bytes
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Enqueues one job with its type's options.
    pub async fn enqueue<J: Job>(&self, job: J) -> Result<Enqueued, EnqueueError> {
        self.enqueue_with(job, JobOptions::new()).await
    }

    /// Enqueues one job with overrides (delay, priority, queue, …).
    pub async fn enqueue_with<J: Job>(
        &self,
        job: J,
        opts: JobOptions,
    ) -> Result<Enqueued, EnqueueError> {
        let now = self.now().await;
        let new = prepare(job, opts, self.max_payload_bytes, now)?;
        Ok(self.insert(vec![new], now).await?.remove(0))
    }

    /// Enqueues jobs of one type in one round trip. Validates all before writing any.
    pub async fn enqueue_many<J: Job>(
        &self,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        let now = self.now().await;
        let new = prepare_all(jobs, self.max_payload_bytes, now)?;
        self.insert(new, now).await
    }

    /// Enqueues a [`Batch`] of jobs of any types in one round trip. Validates all before
    /// writing any.
    pub async fn enqueue_batch(&self, batch: Batch) -> Result<Vec<Enqueued>, EnqueueError> {
        let now = self.now().await;
        let new = batch
            .items
            .into_iter()
            .map(|(kind, item)| {
                let (job, opts) = item?;
                let job = job.resolve(opts, now)?;
                if job.args.len() > self.max_payload_bytes {
                    return Err(EnqueueError::PayloadTooLarge {
                        kind,
                        size: job.args.len(),
                        limit: self.max_payload_bytes,
                    });
                }
                Ok(job)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.insert(new, now).await
    }

    async fn insert(
        &self,
        jobs: Vec<NewJob>,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        let labels = labels(&jobs);
        let res = self.store.insert(jobs, now).await?;
        Ok(count_enqueued(&labels, res))
    }

    /// The store's time (the database's on Postgres): run times and delays are measured
    /// from it, so a client whose clock is wrong does not schedule jobs early or late.
    pub(crate) async fn now(&self) -> chrono::DateTime<Utc> {
        self.clock.now(&*self.store).await
    }

    /// One job by id.
    pub async fn get(&self, id: JobId) -> Result<Option<JobRow>, StoreError> {
        self.store.get(id).await
    }

    /// A page of jobs, newest first.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRow>, StoreError> {
        self.store.list(filter).await
    }

    /// How many jobs match.
    pub async fn count(&self, filter: &ListFilter) -> Result<u64, StoreError> {
        self.store.count(filter).await
    }

    /// Counts by queue and state, every state.
    pub async fn stats(&self) -> Result<Vec<StateCount>, StoreError> {
        self.store.stats(&[]).await
    }

    /// Cancels a job that is not final (a running attempt's result is then ignored, and its
    /// worker stops it at its next heartbeat).
    pub async fn cancel(&self, id: JobId) -> Result<CancelResult, StoreError> {
        self.store.cancel(id, self.now().await).await
    }

    /// Makes a job that is not running available now (a discarded or cancelled job gets one
    /// more attempt). `None` when no job has that id.
    pub async fn retry(&self, id: JobId) -> Result<Option<JobRow>, StoreError> {
        self.store.retry_now(id, self.now().await).await
    }

    /// Deletes a job that is not running (cancel a running one first); a unique key it held
    /// is free again.
    pub async fn delete(&self, id: JobId) -> Result<DeleteResult, StoreError> {
        self.store.delete(id).await
    }

    /// Pauses `queue` on every worker of the store: none starts a job of it from now on
    /// (within a second on Postgres and in this process; within a second's poll on SQLite);
    /// jobs already running finish, and jobs a worker had claimed ahead go back to the queue
    /// unstarted. Enqueueing goes on. Returns the queue's record.
    pub async fn pause_queue(&self, queue: &str) -> Result<QueueRecord, StoreError> {
        self.store
            .set_queue_paused(queue, true, self.now().await)
            .await
    }

    /// Resumes `queue`: workers claim from it again at once.
    pub async fn resume_queue(&self, queue: &str) -> Result<QueueRecord, StoreError> {
        self.store
            .set_queue_paused(queue, false, self.now().await)
            .await
    }

    /// Sets `queue`'s fleet-wide limit: at most `max_running` of its jobs run at once across
    /// every worker and process (each worker's own concurrency still applies); `None`
    /// removes it. Its other limits are kept. Enforced by the store in the claim, so two
    /// workers can never both take the last slot. Returns the queue's record.
    pub async fn set_queue_limit(
        &self,
        queue: &str,
        max_running: Option<u32>,
    ) -> Result<QueueRecord, StoreError> {
        let mut limits = self.queue_limits(queue).await?;
        limits.max_running = max_running;
        self.set_queue_limits(queue, limits).await
    }

    /// Sets all of `queue`'s fleet-wide limits at once (replacing those it had): running
    /// jobs, running jobs per partition key ([`JobOptions::partition_key`]), starts per
    /// period. The store keeps to them in the claim itself, across every worker and process;
    /// jobs over a limit wait in the queue without using an attempt. Returns the record.
    ///
    /// ```no_run
    /// # async fn f(client: errand::Client<errand::SqliteStore>) -> Result<(), errand::StoreError> {
    /// use std::time::Duration;
    /// use errand::{QueueLimits, RateLimit};
    /// // One running sync per customer; at most 20 calls a second to the mail API.
    /// client.set_queue_limits("sync", QueueLimits::default().max_per_key(1)).await?;
    /// client
    ///     .set_queue_limits("mail", QueueLimits::default().rate(RateLimit::new(20, Duration::from_secs(1))))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`JobOptions::partition_key`]: crate::JobOptions::partition_key
    pub async fn set_queue_limits(
        &self,
        queue: &str,
        limits: QueueLimits,
    ) -> Result<QueueRecord, StoreError> {
        self.store
            .set_queue_limits(queue, &limits, self.now().await)
            .await
    }

    /// `queue`'s limits as stored (none when it has no record).
    pub async fn queue_limits(&self, queue: &str) -> Result<QueueLimits, StoreError> {
        Ok(self
            .store
            .queues()
            .await?
            .into_iter()
            .find(|r| r.name == queue)
            .map(|r| r.limits())
            .unwrap_or_default())
    }

    /// The worker processes on this store as they last reported themselves (queues,
    /// concurrency, jobs held, last heartbeat), oldest started first. A worker whose
    /// `heartbeat_at` is older than three presence intervals (30 s by default) has stopped
    /// reporting: killed, frozen or cut off.
    pub async fn workers(&self) -> Result<Vec<crate::WorkerRecord>, StoreError> {
        self.store.workers().await
    }

    /// Every queue record (a queue never paused may have none).
    pub async fn queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        self.store.queues().await
    }
}

/// (queue, kind) of each job, for the enqueue counter.
pub(crate) fn labels(jobs: &[NewJob]) -> Labels {
    let mut index: HashMap<(&str, &str), u32> = HashMap::new();
    let mut pairs = Vec::new();
    let of = jobs
        .iter()
        .map(|j| {
            *index
                .entry((j.queue.as_str(), j.kind.as_str()))
                .or_insert_with(|| {
                    pairs.push((j.queue.clone(), j.kind.clone()));
                    (pairs.len() - 1) as u32
                })
        })
        .collect();
    Labels { pairs, of }
}

/// The queue and kind of each job of an insert, as an index into the distinct pairs (a
/// batch is usually one): counting what was inserted then updates each pair's counter once,
/// instead of copying two strings and building a metric key per job.
pub(crate) struct Labels {
    pairs: Vec<(String, String)>,
    of: Vec<u32>,
}

impl Labels {
    /// Calls `count(queue, kind, n)` once for each pair with `n` of `res` inserted.
    pub(crate) fn count(&self, res: &[InsertResult], count: impl Fn(&str, &str, u64)) {
        let mut n = vec![0_u64; self.pairs.len()];
        for (&i, r) in self.of.iter().zip(res) {
            if r.inserted {
                n[i as usize] += 1;
            }
        }
        for ((queue, kind), n) in self.pairs.iter().zip(n) {
            if n > 0 {
                count(queue, kind, n);
            }
        }
    }
}

/// Counts the jobs actually inserted and turns store results into [`Enqueued`].
pub(crate) fn count_enqueued(labels: &Labels, res: Vec<InsertResult>) -> Vec<Enqueued> {
    labels.count(&res, crate::telemetry::enqueued);
    res.into_iter().map(Enqueued::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Note {
        text: String,
    }

    impl Job for Note {
        const KIND: &'static str = "note";
        type State = ();
        async fn run(self, _: crate::JobContext<()>) -> Result<crate::Outcome, crate::JobError> {
            Ok(crate::Outcome::Complete)
        }
    }

    fn prepared(text: &str) -> Result<NewJob, EnqueueError> {
        prepare(
            Note { text: text.into() },
            JobOptions::new(),
            usize::MAX,
            Utc::now(),
        )
    }

    #[test]
    fn inserted_jobs_are_counted_once_per_queue_and_kind() {
        let job = |queue: &str, kind: &str| {
            let mut j = prepared("x").unwrap();
            (j.queue, j.kind) = (queue.into(), kind.into());
            j
        };
        let jobs = [
            job("a", "k"),
            job("b", "k"),
            job("a", "k"),
            job("a", "j"),
            job("a", "k"),
        ];
        let res: Vec<InsertResult> = [true, true, false, true, true]
            .into_iter()
            .enumerate()
            .map(|(id, inserted)| InsertResult {
                id: id as i64,
                inserted,
            })
            .collect();
        let seen = std::sync::Mutex::new(Vec::new());
        labels(&jobs).count(&res, |q, k, n| {
            seen.lock().unwrap().push((q.to_owned(), k.to_owned(), n))
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        let pair = |q: &str, k: &str, n| (q.to_owned(), k.to_owned(), n);
        assert_eq!(
            seen,
            [pair("a", "j", 1), pair("a", "k", 2), pair("b", "k", 1)]
        );
    }

    #[test]
    fn a_nul_in_the_payload_is_refused_and_backslash_text_is_not() {
        for text in ["a\0b", "\0", "x\\\0", "\\\\\0"] {
            assert!(
                matches!(
                    prepared(text),
                    Err(EnqueueError::NulInPayload { kind: "note" })
                ),
                "{text:?}"
            );
        }
        // The six characters `\u0000` as text serialize as `\\u0000`: not a NUL.
        for text in ["\\u0000", "\\\\u0000", "u0000", "plain"] {
            assert!(prepared(text).is_ok(), "{text:?}");
        }
    }
}
