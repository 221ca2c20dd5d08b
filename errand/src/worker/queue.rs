//! [`QueueOptions`]: how one worker works one queue.

use std::time::Duration;

use super::pacing::Prefetch;

/// How a worker works one queue: concurrency, prefetch and polling. Pass it, or just a
/// concurrency, to [`WorkerBuilder::queue`](crate::WorkerBuilder::queue):
///
/// ```
/// use std::time::Duration;
/// use errand::QueueOptions;
/// // Ten at once, nothing claimed ahead (long jobs), polled every 5 s when idle.
/// let mail = QueueOptions::new(10).prefetch(0).poll_interval(Duration::from_secs(5));
/// ```
///
/// Settings left unset take the worker's ([`WorkerBuilder::poll_interval`](crate::WorkerBuilder::poll_interval),
/// [`WorkerBuilder::fetch_cooldown`](crate::WorkerBuilder::fetch_cooldown)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    pub(crate) concurrency: usize,
    pub(crate) prefetch: Prefetch,
    pub(crate) poll_interval: Option<Duration>,
    pub(crate) fetch_cooldown: Option<Duration>,
    pub(crate) prefetch_bytes: usize,
}

impl QueueOptions {
    /// At most `concurrency` jobs of the queue running at once in this worker (at least 1).
    pub fn new(concurrency: usize) -> Self {
        QueueOptions {
            concurrency,
            prefetch: Prefetch::Auto { max: 1000 },
            poll_interval: None,
            fetch_cooldown: None,
            prefetch_bytes: DEFAULT_PREFETCH_BYTES,
        }
    }

    /// How many claimed jobs may wait for a free slot (at most 10,000). By default the queue
    /// keeps what its slots finish in about 50 ms of average run time, at most 1,000: many for
    /// short jobs (one claim feeds many completions), none for long ones (no hoarding while
    /// other workers idle). A fixed number overrides that; 0 claims only for free slots.
    /// Waiting jobs hold their leases and go back to the queue unstarted at shutdown.
    pub fn prefetch(mut self, jobs: usize) -> Self {
        self.prefetch = Prefetch::Fixed(jobs);
        self
    }

    /// Most payload bytes the claimed jobs waiting for a slot may hold (default 64 MiB): the
    /// buffer holds no more jobs than this over the queue's average payload size, so a queue
    /// of large jobs does not hold a thousand of them in memory (1,000 claimed 1 MB jobs held
    /// 1.46 GB before). Running jobs are not counted: the concurrency bounds them.
    pub fn prefetch_bytes(mut self, bytes: usize) -> Self {
        self.prefetch_bytes = bytes;
        self
    }

    /// Fallback polling of this queue when no wake-up arrives (default: the worker's).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = Some(every);
        self
    }

    /// Shortest time between two claims of this queue (default: the worker's).
    pub fn fetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.fetch_cooldown = Some(cooldown);
        self
    }
}

/// Default payload bytes a queue's buffer may hold ([`QueueOptions::prefetch_bytes`]).
pub(crate) const DEFAULT_PREFETCH_BYTES: usize = 64 << 20;

impl From<usize> for QueueOptions {
    /// A concurrency, every other setting left to its default.
    fn from(concurrency: usize) -> Self {
        QueueOptions::new(concurrency)
    }
}
