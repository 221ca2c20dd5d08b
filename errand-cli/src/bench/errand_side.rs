//! The errand side of each phase, through the public API only: `Client` and `Worker`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use errand::store::Store;
use errand::{Client, Job, JobContext, JobError, Outcome, Worker, WorkerHandle};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::{measure, Probe, Sends};

/// A no-op job that reports its run to the probe.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BenchJob {
    pub(crate) seq: u32,
}

impl Job for BenchJob {
    const KIND: &'static str = "errand_bench";
    const QUEUE: &'static str = "bench";
    type State = Arc<Probe>;

    async fn run(self, cx: JobContext<Arc<Probe>>) -> Result<Outcome, JobError> {
        cx.state().ran(self.seq);
        Ok(Outcome::Complete)
    }
}

pub(crate) type BenchStore = Arc<dyn Store>;

pub(crate) fn worker(store: &BenchStore, probe: &Arc<Probe>, concurrency: usize) -> WorkerHandle {
    Worker::builder(store.clone(), probe.clone())
        .register::<BenchJob>()
        .queue("bench", concurrency)
        // A pass a second: with `--prune-backlog`, pruning starts within the latency phase.
        .prune_interval(Duration::from_secs(1))
        .build()
        .expect("bench worker configuration is valid")
        .start()
}

pub(crate) async fn enqueue_single(
    client: &Client<BenchStore>,
    seqs: std::ops::Range<u32>,
    pb: &ProgressBar,
) -> Result<Duration, errand::EnqueueError> {
    let start = Instant::now();
    for seq in seqs {
        client.enqueue(BenchJob { seq }).await?;
        pb.inc(1);
    }
    Ok(start.elapsed())
}

pub(crate) async fn enqueue_batch(
    client: &Client<BenchStore>,
    n: u32,
    batch: usize,
    pb: &ProgressBar,
) -> Result<Duration, errand::EnqueueError> {
    let start = Instant::now();
    let seqs: Vec<u32> = (0..n).collect();
    for chunk in seqs.chunks(batch) {
        client
            .enqueue_many(chunk.iter().map(|&seq| BenchJob { seq }))
            .await?;
        pb.inc(chunk.len() as u64);
    }
    Ok(start.elapsed())
}

/// One workflow of `n` bench jobs (n ≥ 3): `root` (seq 0), `fan-0` … waiting for it (seqs 1
/// to n - 2), and `sum` (seq n - 1) waiting for every fan-out step.
pub(crate) async fn enqueue_fan_out_in(
    client: &Client<BenchStore>,
    n: u32,
) -> Result<(), errand::EnqueueError> {
    let n = n.max(3);
    let fan: Vec<String> = (0..n - 2).map(|i| format!("fan-{i}")).collect();
    let wf = errand::Workflow::new("bench")
        .add("root", BenchJob { seq: 0 })
        .add_each("fan", (1..n - 1).map(|seq| BenchJob { seq }), ["root"])
        .add_after("sum", BenchJob { seq: n - 1 }, fan.iter());
    client.enqueue_workflow(wf).await?;
    Ok(())
}

/// What the process phase measured.
pub(crate) struct Processed {
    pub(crate) elapsed: Duration,
    pub(crate) peak_rss_mb: Option<f64>,
    /// Jobs that ran but are not `completed` in the store afterwards (counted as lost).
    pub(crate) not_completed: u64,
}

/// `n` jobs are ready; a worker with `concurrency` runs them; done when all are completed in
/// the store.
pub(crate) async fn process(
    store: &BenchStore,
    probe: &Arc<Probe>,
    concurrency: usize,
    pb: &ProgressBar,
) -> Result<Processed, errand::StoreError> {
    let n = probe.len() as u64;
    // Once every job ran, the clock stops when no job is left in a non-final state: a count
    // over the small per-state indexes, cheap to ask every millisecond (counting the
    // completed jobs would scan them all, and a slow poll would be timed as errand's).
    let unfinished = [
        errand::JobState::Pending,
        errand::JobState::Available,
        errand::JobState::Running,
        errand::JobState::Scheduled,
        errand::JobState::Retryable,
    ]
    .into_iter()
    .fold(errand::ListFilter::new(), |f, s| f.state(s));
    measure::reset_peak_rss();
    let start = Instant::now();
    let handle = worker(store, probe, concurrency);
    loop {
        pb.set_position(probe.ran_count() as u64);
        if probe.all_ran() && store.count(&unfinished).await? == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    let peak_rss_mb = measure::peak_rss_mb();
    pb.set_position(n);
    handle.shutdown().await;
    // Outside the clock: every job must have ended `completed`, not just left the queue.
    let completed = errand::ListFilter::new().state(errand::JobState::Completed);
    let not_completed = n.saturating_sub(store.count(&completed).await?);
    Ok(Processed {
        elapsed,
        peak_rss_mb,
        not_completed,
    })
}

/// The queue `store_old_completed` fills (no bench worker works it).
const OLD_QUEUE: &str = "bench_old";

/// The jobs [`store_old_completed`] stored and the pruner has not deleted yet.
pub(crate) fn old_completed() -> errand::ListFilter {
    errand::ListFilter::new()
        .queue(OLD_QUEUE)
        .state(errand::JobState::Completed)
}

/// Stores `n` jobs completed two days ago, through the store's own calls (insert, claim,
/// finish in batches of 1,000), on a queue no worker works: past the default retention of
/// completed jobs (24 h), so a worker's pruner deletes them.
pub(crate) async fn store_old_completed(
    store: &BenchStore,
    n: u32,
    pb: &ProgressBar,
) -> Result<(), errand::StoreError> {
    use errand::store::{ClaimRequest, Finish, FinishAction, NewJob};
    let then = store.now(chrono::Utc::now()).await - chrono::TimeDelta::days(2);
    let mut left = n;
    while left > 0 {
        let k = left.min(1_000);
        let jobs: Vec<NewJob> = (0..k)
            .map(|seq| NewJob {
                kind: BenchJob::KIND.into(),
                queue: OLD_QUEUE.into(),
                args: format!("{{\"seq\":{seq}}}"),
                priority: 0,
                max_attempts: 1,
                run_at: then,
                tags: Vec::new(),
                unique_key: None,
                unique_states: Default::default(),
                unique_for_ms: None,
                backoff: None,
                timeout_ms: None,
                partition_key: None,
            })
            .collect();
        store.insert(jobs, then).await?;
        let claimed = store
            .claim(&ClaimRequest {
                queue: OLD_QUEUE.into(),
                limit: k,
                worker_id: "bench-seed".into(),
                now: then,
                lease: Duration::from_secs(3600),
                held: None,
            })
            .await?;
        let done: Vec<Finish> = claimed
            .iter()
            .map(|r| Finish {
                lease: r.lease_ref(),
                at: then,
                action: FinishAction::Complete,
            })
            .collect();
        store.finish(&done).await?;
        left -= k;
        pb.inc(k.into());
    }
    Ok(())
}

/// An idle worker; `samples` single enqueues spaced 5–25 ms, each timed (see
/// `Probe::latency`).
pub(crate) async fn latency(
    store: &BenchStore,
    probe: &Arc<Probe>,
    pb: &ProgressBar,
) -> Result<Sends, errand::EnqueueError> {
    let handle = worker(store, probe, 10);
    // Let the worker settle (and, on Postgres, its LISTEN connection come up).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = Client::new(store.clone());
    let mut sends = Sends::default();
    for seq in 0..probe.len() as u32 {
        sends.time(probe, client.enqueue(BenchJob { seq })).await?;
        pb.inc(1);
        tokio::time::sleep(Duration::from_millis(rand::random_range(5..=25))).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe.all_ran() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.shutdown().await;
    Ok(sends)
}

/// A worker with no work for `secs`: statements per second and CPU % of this process.
pub(crate) async fn idle(
    store: &BenchStore,
    probe: &Arc<Probe>,
    secs: u64,
    queues: u32,
) -> (f64, f64) {
    let mut builder = Worker::builder(store.clone(), probe.clone())
        .register::<BenchJob>()
        .queue("bench", 10);
    for i in 1..queues {
        builder = builder.queue(format!("idle-{i}"), 1);
    }
    let handle = builder
        .build()
        .expect("bench worker configuration is valid")
        .start();
    // Past start-up work (each queue's first claim: with 500 queues a thousand statements,
    // which may take longer than a second on a busy machine): until a half second passes
    // with at most two statements, for up to 30 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settle = std::time::Instant::now();
    while settle.elapsed() < Duration::from_secs(30) {
        let (n, ()) = measure::count_queries(tokio::time::sleep(Duration::from_millis(500))).await;
        if n <= 2 {
            break;
        }
    }
    let cpu0 = measure::cpu_time();
    let (queries, ()) = measure::count_queries(tokio::time::sleep(Duration::from_secs(secs))).await;
    let cpu = measure::cpu_time() - cpu0;
    handle.shutdown().await;
    (
        queries as f64 / secs as f64,
        100.0 * cpu.as_secs_f64() / secs as f64,
    )
}
