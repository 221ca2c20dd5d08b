//! Queues as stored objects: a record per queue that an operator has acted on, holding its
//! state (paused or not) and its limits. A queue without a record is active and unlimited.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{StoreError, MAX_QUEUE_LEN};

/// A queue's stored record (see [`Store::queues`](crate::Store::queues)).
///
/// `#[non_exhaustive]`: more limits will join these.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct QueueRecord {
    /// The queue's name.
    pub name: String,
    /// Paused: no worker starts a job of this queue; running jobs finish.
    pub paused: bool,
    /// At most this many of the queue's jobs running at once, across every worker and
    /// process (`None`: each worker's own concurrency is the only bound).
    pub max_running: Option<u32>,
    /// At most this many running at once per partition key (see
    /// [`NewJob::partition_key`](crate::NewJob::partition_key)), fleet-wide.
    pub max_per_key: Option<u32>,
    /// At most this many starts per period, fleet-wide.
    pub rate: Option<RateLimit>,
    /// At most this many starts per period per partition key, fleet-wide.
    pub rate_per_key: Option<RateLimit>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl QueueRecord {
    /// A record of `name`, unlimited.
    pub fn new(name: impl Into<String>, paused: bool, updated_at: DateTime<Utc>) -> Self {
        QueueRecord {
            name: name.into(),
            paused,
            max_running: None,
            max_per_key: None,
            rate: None,
            rate_per_key: None,
            updated_at,
        }
    }

    /// With `limits` (replacing every limit the record had).
    pub fn with_limits(mut self, limits: QueueLimits) -> Self {
        self.max_running = limits.max_running;
        self.max_per_key = limits.max_per_key;
        self.rate = limits.rate;
        self.rate_per_key = limits.rate_per_key;
        self
    }

    /// The record's limits.
    pub fn limits(&self) -> QueueLimits {
        QueueLimits {
            max_running: self.max_running,
            max_per_key: self.max_per_key,
            rate: self.rate,
            rate_per_key: self.rate_per_key,
        }
    }

    /// Whether claims of this queue need more than a count of free slots: a per-key limit
    /// or a rate limit, which the store applies job by job.
    pub fn is_metered(&self) -> bool {
        self.limits().is_metered()
    }

    /// With a fleet-wide limit on running jobs.
    pub fn with_max_running(mut self, max_running: Option<u32>) -> Self {
        self.max_running = max_running;
        self
    }

    /// How many jobs a claim wanting `want` may take when `running` of the queue's jobs run.
    pub fn claimable(&self, want: u32, running: u64) -> u32 {
        match (self.paused, self.max_running) {
            (true, _) => 0,
            (false, None) => want,
            (false, Some(max)) => {
                u64::from(max).saturating_sub(running).min(u64::from(want)) as u32
            }
        }
    }
}

/// A queue's fleet-wide limits, set together with
/// [`Store::set_queue_limits`](crate::Store::set_queue_limits) (each `None`: no such limit).
///
/// ```
/// use std::time::Duration;
/// use errand_core::{QueueLimits, RateLimit};
///
/// // One running sync per customer, at most 20 starts a second across the fleet.
/// let limits = QueueLimits::default()
///     .max_per_key(1)
///     .rate(RateLimit::new(20, Duration::from_secs(1)));
/// assert_eq!(limits.max_per_key, Some(1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueLimits {
    /// At most this many of the queue's jobs running at once across every worker.
    pub max_running: Option<u32>,
    /// At most this many running at once per partition key; jobs without a key are not
    /// limited per key.
    pub max_per_key: Option<u32>,
    /// At most this many starts per period.
    pub rate: Option<RateLimit>,
    /// At most this many starts per period per partition key; jobs without a key are not
    /// limited per key.
    pub rate_per_key: Option<RateLimit>,
}

impl QueueLimits {
    /// Whether these limits meter claims job by job (a per-key limit, a rate, a rate per key).
    pub fn is_metered(&self) -> bool {
        self.max_per_key.is_some() || self.rate.is_some() || self.rate_per_key.is_some()
    }

    /// Whether claims walk the keys (a per-key limit or a rate per key).
    pub fn is_keyed(&self) -> bool {
        self.max_per_key.is_some() || self.rate_per_key.is_some()
    }

    /// At most `n` of the queue's jobs running at once, fleet-wide.
    pub fn max_running(mut self, n: u32) -> Self {
        self.max_running = Some(n);
        self
    }

    /// At most `n` running at once per partition key, fleet-wide.
    pub fn max_per_key(mut self, n: u32) -> Self {
        self.max_per_key = Some(n);
        self
    }

    /// At most `rate.starts` starts per `rate.period`, fleet-wide.
    pub fn rate(mut self, rate: RateLimit) -> Self {
        self.rate = Some(rate);
        self
    }

    /// At most `rate.starts` starts per `rate.period` for each partition key, fleet-wide.
    pub fn rate_per_key(mut self, rate: RateLimit) -> Self {
        self.rate_per_key = Some(rate);
        self
    }
}

/// At most `starts` job starts per `period`, across every worker: a token bucket stored
/// with the queue's record, refilled continuously at `starts / period` and holding at most
/// [`burst`](Self::burst) tokens; each claimed job takes one. Jobs over the limit wait in
/// the queue: no attempt is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RateLimit {
    /// Starts allowed per period.
    pub starts: u32,
    /// The period.
    #[serde(with = "millis")]
    pub period: Duration,
}

mod millis {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Largest limit accepted (running jobs, per key, starts per period): what every store keeps
/// in a 32-bit integer column.
pub const MAX_LIMIT: u32 = i32::MAX as u32;

/// Longest rate-limit period accepted: a day.
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(86_400);

impl RateLimit {
    /// `starts` per `period`.
    pub fn new(starts: u32, period: Duration) -> Self {
        RateLimit { starts, period }
    }

    /// Most tokens the bucket holds: a tenth of a period's starts, at least one. So in any
    /// window of one period at most `starts + burst` jobs start, and a queue idle for a
    /// while does not start a whole period's worth at once.
    pub fn burst(&self) -> f64 {
        (f64::from(self.starts) / 10.0).floor().max(1.0)
    }

    /// The period in whole milliseconds (as stored).
    pub fn period_ms(&self) -> i64 {
        i64::try_from(self.period.as_millis()).unwrap_or(i64::MAX)
    }

    /// Tokens per millisecond.
    pub fn per_ms(&self) -> f64 {
        f64::from(self.starts) / self.period_ms().max(1) as f64
    }

    /// The average time between starts.
    pub fn gap(&self) -> Duration {
        self.period / self.starts.max(1)
    }

    /// How long an emptied bucket takes to fill to the burst: a bucket refilled longer ago
    /// than this is full, as good as none.
    pub fn fill_time(&self) -> Duration {
        Duration::from_millis((self.burst() / self.per_ms()).ceil() as u64)
    }

    /// A bucket holding `tokens` at `refilled_at`, refilled to `now` (never past the burst;
    /// a clock behind `refilled_at` adds nothing): the tokens now, and the new refill time
    /// (the later of the two, so a process with a slow clock cannot refill twice).
    pub fn refill(
        &self,
        tokens: Option<f64>,
        refilled_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> (f64, DateTime<Utc>) {
        let burst = self.burst();
        let (Some(tokens), Some(at)) = (tokens, refilled_at) else {
            return (burst, now);
        };
        // In microseconds: whole milliseconds would drop up to one per claim, a few per cent
        // of the rate when claims come every few tens of milliseconds.
        let elapsed = match (now - at).num_microseconds() {
            Some(us) => us.max(0) as f64 / 1000.0,
            None => f64::MAX, // centuries: full
        };
        let tokens = if tokens.is_finite() { tokens } else { 0.0 };
        (
            (tokens + elapsed * self.per_ms()).clamp(0.0, burst),
            at.max(now),
        )
    }

    /// Rebuilds a stored limit (`None` when either half is missing or out of range).
    pub fn from_stored(starts: Option<i64>, period_ms: Option<i64>) -> Option<Self> {
        let starts = u32::try_from(starts?).ok().filter(|n| *n > 0)?;
        let ms = u64::try_from(period_ms?).ok().filter(|n| *n > 0)?;
        Some(RateLimit::new(starts, Duration::from_millis(ms)))
    }
}

/// Checks a name (`what`: queue, kind…): 1–`max` bytes, not blank, no control characters.
/// The reason is a sentence naming the problem.
pub fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{what} name is empty"));
    }
    if name.len() > max {
        return Err(format!(
            "{what} name is {} bytes, over the {max}-byte limit",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} name {name:?} contains control characters"));
    }
    Ok(())
}

/// A queue name every store accepts in its queue records: [`check_name`] as a store error.
pub fn check_queue_name(queue: &str) -> Result<(), StoreError> {
    check_name("queue", queue, MAX_QUEUE_LEN).map_err(|reason| StoreError::InvalidQueue {
        queue: queue.chars().take(MAX_QUEUE_LEN).collect(),
        reason,
    })
}

/// A queue name and limits every store accepts: the name as [`check_queue_name`]; limits
/// of at least one running job, one per key, one start per period; a period from 1 ms to
/// [`MAX_RATE_PERIOD`].
pub fn check_queue_limits(queue: &str, limits: &QueueLimits) -> Result<(), StoreError> {
    check_queue_name(queue)?;
    let bad = |reason: &str| {
        Err(StoreError::InvalidQueue {
            queue: queue.to_owned(),
            reason: reason.into(),
        })
    };
    if limits.max_running == Some(0) {
        return bad("a limit of 0 running jobs: use at least 1, or pause the queue");
    }
    if limits.max_per_key == Some(0) {
        return bad("a limit of 0 running jobs per key: use at least 1, or pause the queue");
    }
    let counts = [limits.max_running, limits.max_per_key]
        .into_iter()
        .chain([limits.rate, limits.rate_per_key].map(|r| r.map(|r| r.starts)));
    if counts.flatten().any(|n| n > MAX_LIMIT) {
        return bad("a limit over 2147483647: every store keeps limits as 32-bit integers");
    }
    for r in [limits.rate, limits.rate_per_key].into_iter().flatten() {
        if r.starts == 0 {
            return bad("a rate of 0 starts: use at least 1, or pause the queue");
        }
        if r.period < Duration::from_millis(1) || r.period > MAX_RATE_PERIOD {
            return bad("a rate-limit period must be from 1 ms to a day");
        }
    }
    Ok(())
}
