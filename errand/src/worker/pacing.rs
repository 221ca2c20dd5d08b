//! How many claimed jobs a queue keeps waiting for a slot (prefetch).
//!
//! One claim per freed slot makes a queue of short jobs wait on claim round trips; a fixed
//! large buffer makes a queue of long jobs hoard work that idle workers elsewhere could run.
//! So by default the buffer holds what the queue's slots finish in about [`WINDOW`], from the
//! running average of run times: none for minute-long jobs, up to the cap for no-op ones.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use errand_core::{JobRow, QueueLimits};
use tokio::sync::Notify;

/// Work the buffer may hold, in expected run time.
pub(crate) const WINDOW: Duration = Duration::from_millis(50);

/// The queue's prefetch setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefetch {
    /// Always this many.
    Fixed(usize),
    /// What the slots finish in [`WINDOW`], at most `max`.
    Auto { max: usize },
}

/// Per-queue state shared by the producer and its executors.
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    /// A slot was freed, or the buffer ran low.
    pub(crate) freed: Notify,
    /// Claimed jobs waiting for a slot: the producer fills it and starts executors on free
    /// slots; an executor whose job ended takes the next one itself, so a queue of short jobs
    /// does not wake the producer and spawn a task per job.
    buffer: Mutex<VecDeque<JobRow>>,
    /// At or below this many buffered jobs the producer wants to claim more.
    low_water: AtomicUsize,
    /// The worker is shutting down: executors start no buffered job.
    stopping: AtomicBool,
    /// The queue is paused (see `controls`): nothing is claimed or started.
    paused: AtomicBool,
    /// The queue's fleet-wide limit (0: none): a claim may come back short because the
    /// slots are taken, so a job ending here is a reason to claim again; and the buffer is
    /// kept well under it (see `prefetch_under_limit`).
    limit: AtomicU32,
    /// The queue has a per-key or a rate limit: a claim may come back short whatever the
    /// slots, and nothing is buffered (a buffered job holds its key's slot, or spent a token,
    /// while it waits).
    metered: AtomicBool,
    /// Under a rate limit, the average time between starts (ns; 0: none): how often the
    /// producer claims while work waits.
    rate_gap_ns: AtomicU64,
    /// Exponentially weighted mean run time (1/8 weight), nanoseconds; 0 until a run ends.
    avg_run_ns: AtomicU64,
    /// Exponentially weighted mean payload size of claimed jobs (1/8 weight), bytes; 0 until
    /// a claim returns jobs.
    avg_bytes: AtomicU64,
}

impl QueueState {
    pub(crate) fn record_run(&self, d: Duration) {
        let sample = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        let old = self.avg_run_ns.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.avg_run_ns.store(new, Ordering::Relaxed);
    }

    /// Notes the payload sizes of claimed jobs.
    pub(crate) fn record_sizes(&self, rows: &[JobRow]) {
        for r in rows {
            let sample = r.args.len() as u64 + 1;
            let old = self.avg_bytes.load(Ordering::Relaxed);
            let new = if old == 0 {
                sample
            } else {
                old - old / 8 + sample / 8
            };
            self.avg_bytes.store(new, Ordering::Relaxed);
        }
    }

    /// The mean payload size of claimed jobs, once a claim returned some.
    pub(crate) fn avg_bytes(&self) -> Option<usize> {
        match self.avg_bytes.load(Ordering::Relaxed) {
            0 => None,
            b => Some(usize::try_from(b).unwrap_or(usize::MAX)),
        }
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, VecDeque<JobRow>> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds claimed jobs to the buffer.
    pub(crate) fn buffer_extend(&self, rows: Vec<JobRow>) {
        self.buffer().extend(rows);
    }

    /// Jobs waiting in the buffer.
    pub(crate) fn buffered(&self) -> usize {
        self.buffer().len()
    }

    /// Sets how low the buffer may run before the producer is woken to claim.
    pub(crate) fn set_low_water(&self, jobs: usize) {
        self.low_water.store(jobs, Ordering::Relaxed);
    }

    /// The next buffered job, unless the worker is stopping. Wakes the producer when this
    /// leaves the buffer at or below its low-water mark.
    pub(crate) fn next_buffered(&self) -> Option<JobRow> {
        if self.stopping.load(Ordering::Acquire) || self.is_paused() {
            return None;
        }
        let (row, left) = {
            let mut b = self.buffer();
            (b.pop_front()?, b.len())
        };
        if left <= self.low_water.load(Ordering::Relaxed) {
            self.freed.notify_one();
        }
        Some(row)
    }

    /// Sets whether the queue is paused; whether that changed it.
    pub(crate) fn set_paused(&self, paused: bool) -> bool {
        self.paused.swap(paused, Ordering::AcqRel) != paused
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Takes the queue's limits as its record holds them.
    pub(crate) fn set_limits(&self, limits: &QueueLimits) {
        self.limit
            .store(limits.max_running.unwrap_or(0), Ordering::Release);
        self.metered.store(limits.is_metered(), Ordering::Release);
        let gap = limits.rate.map_or(0, |r| {
            u64::try_from(r.gap().as_nanos()).unwrap_or(u64::MAX).max(1)
        });
        self.rate_gap_ns.store(gap, Ordering::Release);
    }

    /// Whether a fleet-wide limit may cut a claim short: then a job ending here is a reason
    /// to claim again.
    pub(crate) fn is_limited(&self) -> bool {
        self.limit().is_some() || self.is_metered()
    }

    pub(crate) fn is_metered(&self) -> bool {
        self.metered.load(Ordering::Acquire)
    }

    /// Under a rate limit: the average time between starts.
    pub(crate) fn rate_gap(&self) -> Option<Duration> {
        match self.rate_gap_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    pub(crate) fn limit(&self) -> Option<u32> {
        match self.limit.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }

    /// Empties the buffer, returning the jobs it held (claimed, never started).
    pub(crate) fn take_buffer(&self) -> Vec<JobRow> {
        self.buffer().drain(..).collect()
    }

    /// Shutdown: no buffered job starts any more (the worker releases their leases).
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.buffer().clear();
    }

    pub(crate) fn avg_run(&self) -> Option<Duration> {
        match self.avg_run_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

/// The prefetch under a fleet-wide `limit`: the store counts buffered jobs (claimed) and
/// jobs whose outcome is not written yet as running, so a buffer that fills the limit makes
/// every claim come back short (a claim per written batch: Postgres fell to 0.72 of its
/// throughput with a limit of 1,000 over 10 slots). Half of what the limit leaves beyond
/// this worker's slots keeps claims whole while outcomes are on their way. A metered queue
/// (per-key or rate limit) buffers nothing: a job claimed ahead would hold its key's slot or
/// have spent its token while it waited here.
pub(crate) fn prefetch_under_limit(
    prefetch: usize,
    concurrency: usize,
    limit: Option<u32>,
    metered: bool,
) -> usize {
    match limit {
        _ if metered => 0,
        None => prefetch,
        Some(l) => prefetch.min((l as usize).saturating_sub(concurrency) / 2),
    }
}

/// The prefetch within a byte budget: no more jobs than `budget` over the mean payload size
/// (unknown before the first claim returns jobs, whose size is the concurrency's and the
/// default prefetch's).
pub(crate) fn prefetch_under_bytes(prefetch: usize, budget: usize, avg: Option<usize>) -> usize {
    match avg {
        None => prefetch,
        Some(b) => prefetch.min(budget / b.max(1)),
    }
}

/// Fastest a rate-limited queue's producer claims.
const MIN_RATE_POLL: Duration = Duration::from_millis(10);
/// How long after its last jobs a rate-limited queue's producer keeps the rate's pace.
const RATE_PACE_FOR: Duration = Duration::from_secs(2);

/// How long the producer waits for a wake-up before claiming anyway: the poll interval, or
/// under a rate limit (`gap` between starts) while jobs came within [`RATE_PACE_FOR`] (or ten
/// gaps), until the next whole gap after the last claim that took jobs (at least
/// [`MIN_RATE_POLL`]). On that grid the bucket has just refilled a token when the claim
/// comes; a claim at `now + gap` instead, after one in between found half a token (a job
/// ended), comes half a gap late, and a bucket of one token cannot keep what refilled
/// meanwhile: one worker at 10/s started 6.5 a second.
pub(crate) fn poll(
    interval: Duration,
    gap: Option<Duration>,
    took_at: Option<tokio::time::Instant>,
) -> Duration {
    match (gap, took_at) {
        (Some(gap), Some(t)) if t.elapsed() < RATE_PACE_FOR.max(gap.saturating_mul(10)) => {
            let gap_ns = gap.as_nanos().max(1);
            let into = t.elapsed().as_nanos() % gap_ns;
            let due = Duration::from_nanos(u64::try_from(gap_ns - into).unwrap_or(u64::MAX));
            interval.min(due.max(MIN_RATE_POLL))
        }
        _ => interval,
    }
}

/// Under a fleet-wide `limit`, how many of `wanted` a claim may usefully ask for when this
/// worker itself holds `held` of the queue's jobs (running here or buffered): a claim for
/// more would come back short, costing a round trip. 0: wait for a job to end.
pub(crate) fn wanted_under_limit(wanted: usize, limit: Option<u32>, held: usize) -> usize {
    match limit {
        None => wanted,
        Some(l) => wanted.min((l as usize).saturating_sub(held)),
    }
}

/// Jobs to keep waiting beyond the running ones.
pub(crate) fn prefetch(setting: Prefetch, concurrency: usize, avg_run: Option<Duration>) -> usize {
    match setting {
        Prefetch::Fixed(n) => n,
        Prefetch::Auto { max } => match avg_run {
            None => concurrency.min(max),
            Some(d) => {
                let per_slot = WINDOW.as_nanos() / d.as_nanos().max(1);
                (concurrency as u128 * per_slot).min(max as u128) as usize
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTO: Prefetch = Prefetch::Auto { max: 1000 };

    #[test]
    fn a_limit_keeps_the_buffer_well_under_it() {
        assert_eq!(prefetch_under_limit(1000, 10, None, false), 1000);
        assert_eq!(prefetch_under_limit(1000, 10, Some(1000), false), 495);
        assert_eq!(prefetch_under_limit(1000, 10, Some(100_000), false), 1000);
        assert_eq!(
            prefetch_under_limit(1000, 6, Some(3), false),
            0,
            "a small limit: no buffer"
        );
        assert_eq!(
            prefetch_under_limit(1000, 10, None, true),
            0,
            "metered: no buffer"
        );
    }

    #[test]
    fn large_payloads_shrink_the_buffer() {
        let mb = 1 << 20;
        assert_eq!(prefetch_under_bytes(1000, 64 * mb, None), 1000);
        assert_eq!(prefetch_under_bytes(1000, 64 * mb, Some(100)), 1000);
        assert_eq!(prefetch_under_bytes(1000, 64 * mb, Some(mb)), 64);
        assert_eq!(prefetch_under_bytes(1000, 64 * mb, Some(100 * mb)), 0);
        let q = QueueState::default();
        assert_eq!(q.avg_bytes(), None);
        let mut row = JobRow::new(1, "k", "q", "x".repeat(999));
        q.record_sizes(std::slice::from_ref(&row));
        assert_eq!(q.avg_bytes(), Some(1000));
        row.args = "x".repeat(7999);
        for _ in 0..60 {
            q.record_sizes(std::slice::from_ref(&row));
        }
        assert!(q.avg_bytes().unwrap() > 7_900, "{:?}", q.avg_bytes());
    }

    #[test]
    fn a_claim_asks_only_for_what_the_limit_leaves_this_worker() {
        assert_eq!(wanted_under_limit(500, None, 5_000), 500);
        assert_eq!(wanted_under_limit(500, Some(1000), 700), 300);
        assert_eq!(wanted_under_limit(500, Some(1000), 1000), 0);
        assert_eq!(wanted_under_limit(500, Some(1000), 1200), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_producer_claims_on_the_grid_of_its_last_take() {
        let second = Duration::from_secs(1);
        let gap = Some(Duration::from_millis(100));
        assert_eq!(poll(second, None, None), second);
        assert_eq!(poll(second, gap, None), second, "no work seen yet");
        let took = tokio::time::Instant::now();
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(poll(second, gap, Some(took)), Duration::from_millis(50));
        tokio::time::advance(Duration::from_millis(80)).await;
        assert_eq!(poll(second, gap, Some(took)), Duration::from_millis(70));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            poll(second, gap, Some(took)),
            second,
            "idle: the poll interval"
        );
    }

    #[test]
    fn long_jobs_are_not_hoarded() {
        assert_eq!(prefetch(AUTO, 10, Some(Duration::from_secs(60))), 0);
        assert_eq!(prefetch(AUTO, 10, Some(Duration::from_millis(51))), 0);
    }

    #[test]
    fn short_jobs_fill_the_window_up_to_the_cap() {
        assert_eq!(prefetch(AUTO, 10, Some(Duration::from_millis(5))), 100);
        assert_eq!(prefetch(AUTO, 10, Some(Duration::from_micros(20))), 1000);
    }

    #[test]
    fn unknown_run_time_starts_at_concurrency_and_fixed_wins() {
        assert_eq!(prefetch(AUTO, 10, None), 10);
        assert_eq!(
            prefetch(Prefetch::Fixed(3), 10, Some(Duration::from_micros(1))),
            3
        );
    }

    #[test]
    fn average_follows_recent_runs() {
        let q = QueueState::default();
        assert_eq!(q.avg_run(), None);
        q.record_run(Duration::from_millis(80));
        assert_eq!(q.avg_run(), Some(Duration::from_millis(80)));
        for _ in 0..50 {
            q.record_run(Duration::from_millis(8));
        }
        let avg = q.avg_run().unwrap();
        assert!(avg < Duration::from_millis(9), "{avg:?}");
    }
}
