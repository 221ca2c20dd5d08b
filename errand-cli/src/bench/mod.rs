//! `errand bench`: errand against the fastest hand-written queue on the same database, in the
//! same run, so the figures are ratios that survive a noisy machine.
//!
//! Phases: `enqueue` (single and batched), `process` (N no-op jobs at concurrency W, checked
//! exactly-once), `latency` (enqueue→start with idle workers), `idle` (queries/s and CPU of
//! a worker with nothing to do), `memory` (peak RSS during `process`). See
//! docs/benchmarks.md.

pub mod bloat;
pub mod dashboard;
mod errand_side;
pub mod fleet;
pub mod measure;
mod raw;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use errand::{Client, PgStore, SqliteStore};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::CliError;
use errand_side::BenchStore;
use raw::{PgRaw, Raw, SqliteRaw};

/// Jobs per batch insert, for errand and the raw baseline alike.
pub(crate) const BATCH: usize = 1000;
/// Jobs per large batch: errand's `enqueue_many` against the raw queue's `COPY` (Postgres).
pub(crate) const LARGE_BATCH: usize = 10_000;

/// `errand bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Jobs per phase.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: u32,
    /// Worker concurrency in the process phase.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Enqueues measured in the latency phase.
    #[arg(long, default_value_t = 200)]
    pub latency_samples: u32,
    /// Phases to run: enqueue, process, latency, idle, memory (comma-separated; also bloat,
    /// fleet and workflow, which are not in the default set).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "enqueue,process,latency,idle,memory"
    )]
    pub phases: Vec<Phase>,
    /// Before errand's latency phase, store this many completed jobs that finished two days
    /// ago: the worker's retention (24 h for completed jobs) prunes them, in batches, while
    /// the latency is measured. Compare the p99 with a run without (0, the default).
    #[arg(long, default_value_t = 0)]
    pub prune_backlog: u32,
    /// Set a fleet-wide limit on errand's bench queue (at most this many running at once)
    /// for every phase: with a limit above `--concurrency` it never binds, and the figures
    /// show what enforcing it costs.
    #[arg(long)]
    pub queue_limit: Option<u32>,
    /// Length of the idle phase in seconds (default 65: longer than every periodic task of an
    /// idle worker, the 60 s pruner included, so none is missed).
    #[arg(long, default_value_t = 65)]
    pub idle_secs: u64,
    /// Queues the idle worker works (1 to 10,000): its idle cost should not grow with them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub idle_queues: u32,
    /// The bloat phase (Postgres): jobs offered per second.
    #[arg(long, default_value_t = 1500)]
    pub bloat_rate: u32,
    /// The bloat phase's windows in seconds: clean, with a snapshot held open, after.
    #[arg(long, value_delimiter = ',', default_values_t = [30, 60, 60])]
    pub bloat_secs: Vec<u64>,
    /// The fleet phase (Postgres): the numbers of idle worker processes to measure, in turn.
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [1, 4, 20],
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub fleet_workers: Vec<u32>,
    /// The fleet phase: seconds each fleet settles (from its first spawn) before counting;
    /// each pooled connection prepares each statement the first time it runs it.
    #[arg(long, default_value_t = 120)]
    pub fleet_warmup_secs: u64,
    /// The fleet phase: seconds counted.
    #[arg(long, default_value_t = 30)]
    pub fleet_secs: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A bench phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// Single and batched enqueues.
    Enqueue,
    /// Running ready jobs.
    Process,
    /// Enqueue→start with idle workers.
    Latency,
    /// A worker with nothing to do.
    Idle,
    /// Peak RSS during `process`.
    Memory,
    /// Postgres: jobs at a fixed rate while a session holds a snapshot (not in the default
    /// set: it lasts `--bloat-secs`).
    Bloat,
    /// Postgres: transactions per second and connections of idle fleets of worker
    /// processes (`--fleet-workers`; not in the default set: it lasts minutes).
    Fleet,
    /// errand alone: `--jobs` plain jobs against one workflow of as many steps (a root, a
    /// fan-out waiting for it, a fan-in waiting for all of them), enqueue to last end,
    /// alternating rounds (not in the default set).
    Workflow,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The earliest a job could have started after its enqueue began: half the fastest
    /// enqueue call of the phase (the row must reach the database before any worker can see
    /// it). A job that started sooner makes the phase refuse to report a latency at all.
    pub floor_ms: f64,
    /// Median time the enqueue call itself took: the part of the latency spent before the
    /// enqueuer had its answer (the insert, its commit, its wake-up).
    pub enqueue_p50: f64,
    /// Median time from the enqueue call's return to the job's start: the pickup (negative
    /// when a worker is usually woken before the enqueuer has its answer).
    pub after_enqueue_p50: f64,
    /// Jobs measured.
    pub samples: u64,
}

/// One side's figures; phases not run are `null`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Side {
    /// Single enqueues per second from one task (ten slices, alternating with the other
    /// side; the times of each side's slices are summed).
    pub enqueue_single_per_s: Option<f64>,
    /// Raw only (Postgres): single inserts per second without `NOTIFY` (a queue whose
    /// consumers only poll), in slices alternating with the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enqueue_single_no_notify_per_s: Option<f64>,
    /// Jobs per second enqueued in batches of 1,000 (median of five rounds, alternating with
    /// the other side).
    pub enqueue_batch_per_s: Option<f64>,
    /// Postgres: jobs per second enqueued in batches of 10,000 — errand's `enqueue_many`,
    /// the raw queue's `COPY … FROM STDIN (FORMAT binary)` (median of five rounds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enqueue_copy_per_s: Option<f64>,
    /// Jobs per second run to completion (median of five rounds, alternating with the other
    /// side).
    pub process_per_s: Option<f64>,
    /// Enqueue→start latency (`null` when not run, or refused: see `latency_refused`).
    pub latency_ms: Option<Latency>,
    /// Why the latency phase reported no figures: a job started sooner than it could have
    /// (before its enqueue could reach the database), so the measurement is unsound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_refused: Option<String>,
    /// Statements per second of an idle worker (errand only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_queries_per_s: Option<f64>,
    /// CPU % of the process with an idle worker (errand only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_cpu_pct: Option<f64>,
    /// Peak RSS of the process during `process`, MiB (errand only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mb: Option<f64>,
    /// SQLite: the queue's files at the end of the run (database and its WAL, which does not
    /// shrink: about the largest it grew to), MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_mb: Option<f64>,
    /// Runs beyond one per job in `process`, all rounds (must be 0).
    pub duplicates: u64,
    /// Jobs that never ran in `process`, all rounds (must be 0).
    pub lost: u64,
}

/// errand / raw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ratio {
    /// Single enqueue throughput ratio.
    pub enqueue_single: Option<f64>,
    /// Batch enqueue throughput ratio.
    pub enqueue_batch: Option<f64>,
    /// Large batches (10,000): errand against the raw `COPY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enqueue_copy: Option<f64>,
    /// Processing throughput ratio.
    pub process: Option<f64>,
}

/// The bench's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// Jobs per phase.
    pub jobs: u32,
    /// Worker concurrency.
    pub concurrency: usize,
    /// The fleet-wide limit set on errand's bench queue, if any (`--queue-limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_limit: Option<u32>,
    /// The queues the idle worker worked (`--idle-queues`), when the idle phase ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_queues: Option<u32>,
    /// errand's figures.
    pub errand: Side,
    /// The raw baseline's figures.
    pub raw: Side,
    /// errand / raw.
    pub ratio: Ratio,
    /// With `--prune-backlog`: the old completed jobs stored, and how many the worker's
    /// retention deleted while errand's latency was measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_backlog: Option<PruneBacklog>,
    /// With `--phases bloat`: each window's pickup latency, throughput and dead tuples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bloat: Option<bloat::Bloat>,
    /// With `--phases fleet`: what idle fleets of worker processes cost the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<fleet::Fleet>,
    /// With `--phases workflow`: a fan-out/fan-in workflow against as many plain jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowCost>,
}

/// What `--phases workflow` measured: seconds from the first enqueue until every job
/// ended, medians of alternating rounds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WorkflowCost {
    /// Jobs on each side.
    pub jobs: u32,
    /// Plain jobs: `enqueue_many` in batches of 1,000, then run.
    pub plain_s: f64,
    /// One workflow of as many steps: `root`, a fan-out of `jobs - 2` steps waiting for it,
    /// `sum` waiting for all of them (one `enqueue_workflow`).
    pub workflow_s: f64,
    /// Of `workflow_s`, the `enqueue_workflow` call.
    pub workflow_enqueue_s: f64,
    /// `workflow_s / plain_s` (the target: at most 2).
    pub ratio: f64,
}

/// What `--prune-backlog` stored and what was pruned during the latency phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PruneBacklog {
    /// Old completed jobs stored before the phase.
    pub stored: u64,
    /// Deleted by the pruner while the phase ran.
    pub pruned_during_latency: u64,
}

/// Counts each job's runs and when it started.
pub(crate) struct Probe {
    base: Instant,
    counts: Vec<AtomicU32>,
    started_ns: Vec<AtomicU64>,
    ran: AtomicUsize,
}

impl Probe {
    pub(crate) fn new(n: u32) -> Arc<Self> {
        Arc::new(Probe {
            base: Instant::now(),
            counts: (0..n).map(|_| AtomicU32::new(0)).collect(),
            started_ns: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ran: AtomicUsize::new(0),
        })
    }
    pub(crate) fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
    pub(crate) fn ran(&self, seq: u32) {
        let Some(c) = self.counts.get(seq as usize) else {
            return;
        };
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            self.started_ns[seq as usize].store(self.now_ns().max(1), Ordering::SeqCst);
            self.ran.fetch_add(1, Ordering::SeqCst);
        }
    }
    pub(crate) fn len(&self) -> usize {
        self.counts.len()
    }
    pub(crate) fn ran_count(&self) -> usize {
        self.ran.load(Ordering::SeqCst)
    }
    pub(crate) fn all_ran(&self) -> bool {
        self.ran_count() == self.len()
    }
    /// When each job started, on this probe's clock (0: not started).
    pub(crate) fn started(&self) -> Vec<u64> {
        self.started_ns
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .collect()
    }
    pub(crate) fn duplicates(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| u64::from(c.load(Ordering::SeqCst).saturating_sub(1)))
            .sum()
    }
    pub(crate) fn lost(&self) -> u64 {
        self.counts
            .iter()
            .filter(|c| c.load(Ordering::SeqCst) == 0)
            .count() as u64
    }
    /// The latency of the jobs sent as `sends` records, or why it cannot be reported: a job
    /// that started before its enqueue could reach the database (sooner than half the
    /// fastest enqueue call) was not started by that enqueue — some other run of the same
    /// job, or a broken clock — and one such sample makes every other one suspect. The
    /// bench refuses rather than leaving samples out.
    pub(crate) fn latency(&self, sends: &Sends) -> Result<Latency, String> {
        let floor_ns = sends
            .sent_ns
            .iter()
            .zip(&sends.returned_ns)
            .map(|(&s, &r)| r.saturating_sub(s))
            .min()
            .unwrap_or(0)
            / 2;
        let mut impossible = 0;
        let mut micros = Vec::with_capacity(sends.sent_ns.len());
        for (&sent, started) in sends.sent_ns.iter().zip(&self.started_ns) {
            match started.load(Ordering::SeqCst) {
                0 => {}
                s if s < sent.saturating_add(floor_ns) => impossible += 1,
                s => micros.push((s - sent) / 1000),
            }
        }
        let floor_ms = floor_ns as f64 / 1e6;
        if impossible > 0 {
            return Err(format!(
                "{impossible} of {} jobs started sooner than {floor_ms:.3} ms after their \
                 enqueue began (half the fastest enqueue call): faster than the database can \
                 deliver, so the measurement is unsound and no latency is reported",
                sends.sent_ns.len()
            ));
        }
        let mut lat = measure::percentiles(&micros, floor_ms)
            .ok_or_else(|| "no job of the latency phase started".to_owned())?;
        let median = |mut v: Vec<i64>| -> f64 {
            v.sort_unstable();
            v.get(v.len() / 2).map_or(0.0, |&ns| ns as f64 / 1e6)
        };
        let calls = sends.sent_ns.iter().zip(&sends.returned_ns);
        lat.enqueue_p50 = median(calls.clone().map(|(&s, &r)| r as i64 - s as i64).collect());
        lat.after_enqueue_p50 = median(
            calls
                .zip(&self.started_ns)
                .filter_map(|((_, &r), started)| match started.load(Ordering::SeqCst) {
                    0 => None,
                    s => Some(s as i64 - r as i64),
                })
                .collect(),
        );
        Ok(lat)
    }
}

/// When each enqueue of the latency phase began and returned, on the probe's clock.
#[derive(Debug, Default)]
pub(crate) struct Sends {
    sent_ns: Vec<u64>,
    returned_ns: Vec<u64>,
}

impl Sends {
    /// Times `enqueue` on `probe`'s clock.
    pub(crate) async fn time<T, E>(
        &mut self,
        probe: &Probe,
        enqueue: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.sent_ns.push(probe.now_ns());
        let out = enqueue.await;
        self.returned_ns.push(probe.now_ns());
        out
    }
}

fn per_s(n: u32, d: Duration) -> f64 {
    f64::from(n) / d.as_secs_f64().max(1e-9)
}

fn bar(json: bool, len: u64, label: &str) -> ProgressBar {
    let pb = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len)
    };
    pb.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {per_sec}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_owned());
    pb
}

/// The scratch databases of one run; removed (schema, files) at the end.
struct Scratch {
    store: BenchStore,
    raw: Raw,
    kind: &'static str,
    errand_db: ErrandDb,
    _dir: Option<tempfile::TempDir>,
}

enum ErrandDb {
    Pg(PgStore),
    Sqlite(SqliteStore),
}

async fn scratch(url: &str) -> Result<Scratch, CliError> {
    if crate::open::is_postgres(url) {
        let schema = format!("errand_bench_{}", std::process::id());
        let store = PgStore::builder()
            .url(url)
            .schema(schema.clone())
            .max_connections(20)
            .open()
            .await?;
        let raw = Raw::Pg(PgRaw::new(url, &schema));
        Ok(Scratch {
            store: Arc::new(store.clone()),
            raw,
            kind: "postgres",
            errand_db: ErrandDb::Pg(store),
            _dir: None,
        })
    } else {
        let dir = crate::open::scratch_dir_beside(url, "errand-bench-").map_err(CliError::Io)?;
        let base = dir.path().display().to_string();
        let store = SqliteStore::open(&format!("sqlite://{base}/errand.db")).await?;
        // The raw queue gets a file of its own with errand's settings (WAL,
        // synchronous=NORMAL, busy_timeout).
        let raw = SqliteRaw::open(&dir.path().join("raw.db")).map_err(baseline)?;
        Ok(Scratch {
            store: Arc::new(store.clone()),
            raw: Raw::Sqlite(raw),
            kind: "sqlite",
            errand_db: ErrandDb::Sqlite(store),
            _dir: Some(dir),
        })
    }
}

impl Scratch {
    /// Empties both queues between phases, so each starts on an empty table.
    async fn clear(&self) -> Result<(), CliError> {
        let res = match &self.errand_db {
            ErrandDb::Pg(pg) => sqlx::query(&format!(
                "TRUNCATE \"{0}\".jobs, \"{0}\".job_deps, \"{0}\".workflows",
                pg.schema()
            ))
            .execute(pg.pool())
            .await
            .map(|_| ()),
            // Checkpointed after: the next round does not pay for this clear's WAL (a row
            // by row delete, errand's table having a delete trigger).
            ErrandDb::Sqlite(sq) => sqlx::raw_sql(
                "DELETE FROM errand_jobs; DELETE FROM errand_job_deps; \
                 DELETE FROM errand_workflows; PRAGMA wal_checkpoint(TRUNCATE);",
            )
            .execute(sq.pool())
            .await
            .map(|_| ()),
        };
        res.map_err(errand::StoreError::database)?;
        self.raw.clear().await.map_err(baseline)?;
        Ok(())
    }

    /// SQLite: the size in MiB of each side's database and WAL (errand, raw).
    fn file_sizes(&self) -> (Option<f64>, Option<f64>) {
        let Some(dir) = &self._dir else {
            return (None, None);
        };
        let mib = |name: &str| {
            let size = |f: &str| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len());
            Some((size(name) + size(&format!("{name}-wal"))) as f64 / 1_048_576.0)
        };
        (mib("errand.db"), mib("raw.db"))
    }

    async fn remove(self) {
        if let ErrandDb::Pg(pg) = &self.errand_db {
            let _ = sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", pg.schema()))
                .execute(pg.pool())
                .await;
        }
    }
}

/// Slices of the single enqueue phase, the two sides alternating.
const SINGLE_SLICES: u32 = 10;

/// Rounds of the batch enqueue phase (each side enqueues `--jobs` per round).
const BATCH_ROUNDS: usize = 5;
/// Rounds of the process phase (each side runs `--jobs` per round).
const PROCESS_ROUNDS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The raw baseline's failure as the CLI's.
fn baseline(e: raw::RawError) -> CliError {
    CliError::Baseline(e.to_string())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?).filter(|r| r.is_finite())
}

/// Runs the selected phases and returns the report.
pub async fn bench(url: &str, args: &BenchArgs) -> Result<Report, CliError> {
    let on = |p: Phase| args.phases.contains(&p);
    let sc = scratch(url).await?;
    sc.raw.setup().await.map_err(baseline)?;
    let producer = sc.raw.producer().await.map_err(baseline)?;
    if let Some(limit) = args.queue_limit {
        let now = sc.store.now(chrono::Utc::now()).await;
        let limits = errand::QueueLimits::default().max_running(limit);
        sc.store.set_queue_limits("bench", &limits, now).await?;
    }
    let client = Client::new(sc.store.clone());
    let (n, w) = (args.jobs.max(1), args.concurrency.max(1));
    let mut e = Side::default();
    let mut prune_backlog = None;
    let mut r = Side::default();

    if on(Phase::Enqueue) {
        // Seconds of round trips per side: the two sides take turns, a slice each, so a
        // neighbour's load or a checkpoint lands on both alike.
        let pb = bar(
            args.json,
            u64::from(n) * 2,
            "enqueue single (errand and raw, alternating)",
        );
        let (mut ours, mut theirs, mut quiet) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let slice = n.div_ceil(SINGLE_SLICES);
        let pg = matches!(sc.raw, Raw::Pg(_));
        for from in (0..n).step_by(slice as usize) {
            let to = (from + slice).min(n);
            ours += errand_side::enqueue_single(&client, from..to, &pb).await?;
            let t = Instant::now();
            for seq in from..to {
                producer.insert_one(seq, true).await.map_err(baseline)?;
                pb.inc(1);
            }
            theirs += t.elapsed();
            if pg {
                let t = Instant::now();
                for seq in from..to {
                    producer.insert_one(seq, false).await.map_err(baseline)?;
                }
                quiet += t.elapsed();
            }
        }
        e.enqueue_single_per_s = Some(per_s(n, ours));
        r.enqueue_single_per_s = Some(per_s(n, theirs));
        r.enqueue_single_no_notify_per_s = pg.then(|| per_s(n, quiet));
        pb.finish();
        sc.clear().await?;
        // A batch phase lasts tens of milliseconds, short enough for one checkpoint or
        // autovacuum to halve it: alternate the two sides for a few rounds, keep the medians.
        let pb = bar(
            args.json,
            u64::from(n) * 2 * BATCH_ROUNDS as u64,
            "enqueue batch (errand and raw, alternating)",
        );
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let seqs: Vec<u32> = (0..n).collect();
        let (mut ours_large, mut copies) = (Vec::new(), Vec::new());
        for _ in 0..BATCH_ROUNDS {
            ours.push(per_s(
                n,
                errand_side::enqueue_batch(&client, n, BATCH, &pb).await?,
            ));
            sc.clear().await?;
            let t = Instant::now();
            for chunk in seqs.chunks(BATCH) {
                producer.insert_many(chunk).await.map_err(baseline)?;
                pb.inc(chunk.len() as u64);
            }
            theirs.push(per_s(n, t.elapsed()));
            sc.clear().await?;
            // Large batches: errand's enqueue_many against the raw COPY (Postgres).
            let t = Instant::now();
            let mut copied = true;
            for chunk in seqs.chunks(LARGE_BATCH) {
                match producer.copy_many(chunk).await {
                    Some(res) => res.map_err(baseline)?,
                    None => copied = false,
                }
            }
            if copied {
                copies.push(per_s(n, t.elapsed()));
                sc.clear().await?;
                let hidden = ProgressBar::hidden();
                let d = errand_side::enqueue_batch(&client, n, LARGE_BATCH, &hidden).await?;
                ours_large.push(per_s(n, d));
                sc.clear().await?;
            }
        }
        pb.finish();
        e.enqueue_batch_per_s = Some(median(ours));
        r.enqueue_batch_per_s = Some(median(theirs));
        if !copies.is_empty() {
            e.enqueue_copy_per_s = Some(median(ours_large));
            r.enqueue_copy_per_s = Some(median(copies));
        }
    }

    if on(Phase::Process) || on(Phase::Memory) {
        // Like the batch phase, alternate rounds and keep the median throughput of each
        // side; runs are checked in every round (duplicates and losses add up).
        let rounds = if on(Phase::Process) {
            PROCESS_ROUNDS
        } else {
            1
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let seqs: Vec<u32> = (0..n).collect();
        for round in 1..=rounds {
            let probe = Probe::new(n);
            let pb = bar(
                args.json,
                n.into(),
                &format!("errand process {round}/{rounds}"),
            );
            errand_side::enqueue_batch(&client, n, BATCH, &ProgressBar::hidden()).await?;
            let done = errand_side::process(&sc.store, &probe, w, &pb).await?;
            pb.finish();
            ours.push(per_s(n, done.elapsed));
            if on(Phase::Memory) {
                e.peak_rss_mb = match (e.peak_rss_mb, done.peak_rss_mb) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            e.duplicates += probe.duplicates();
            e.lost += probe.lost().max(done.not_completed);
            sc.clear().await?;
            if !on(Phase::Process) {
                break;
            }
            let probe = Probe::new(n);
            for chunk in seqs.chunks(BATCH) {
                producer.insert_many(chunk).await.map_err(baseline)?;
            }
            let pb = bar(
                args.json,
                n.into(),
                &format!("raw process {round}/{rounds}"),
            );
            let ticker = {
                let (pb, probe) = (pb.clone(), probe.clone());
                tokio::spawn(async move {
                    loop {
                        pb.set_position(probe.ran_count() as u64);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
            };
            let elapsed = sc.raw.process(&probe, w).await.map_err(baseline)?;
            ticker.abort();
            pb.set_position(n.into());
            pb.finish();
            theirs.push(per_s(n, elapsed));
            r.duplicates += probe.duplicates();
            r.lost += probe.lost();
            sc.clear().await?;
        }
        if on(Phase::Process) {
            e.process_per_s = Some(median(ours));
            r.process_per_s = Some(median(theirs));
        }
    }

    if on(Phase::Latency) {
        let m = args.latency_samples.max(1);
        if args.prune_backlog > 0 {
            let pb = bar(args.json, args.prune_backlog.into(), "old completed jobs");
            errand_side::store_old_completed(&sc.store, args.prune_backlog, &pb).await?;
            pb.finish();
        }
        let probe = Probe::new(m);
        let pb = bar(args.json, m.into(), "errand latency");
        let lat = errand_side::latency(&sc.store, &probe, &pb).await?;
        pb.finish();
        match probe.latency(&lat) {
            Ok(l) => e.latency_ms = Some(l),
            Err(why) => e.latency_refused = Some(why),
        }
        if args.prune_backlog > 0 {
            let left = sc.store.count(&errand_side::old_completed()).await?;
            prune_backlog = Some(PruneBacklog {
                stored: args.prune_backlog.into(),
                pruned_during_latency: u64::from(args.prune_backlog).saturating_sub(left),
            });
        }
        sc.clear().await?;

        let probe = Probe::new(m);
        let stop = Arc::new(tokio::sync::Notify::new());
        let ready = Arc::new(tokio::sync::Notify::new());
        let consumer = {
            let (raw, probe) = (sc.raw.clone(), probe.clone());
            let (stop, ready) = (stop.clone(), ready.clone());
            tokio::spawn(async move { raw.consume_until(probe, stop, ready).await })
        };
        // Listening, then settled as long as errand's worker is given.
        ready.notified().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pb = bar(args.json, m.into(), "raw latency");
        let mut sends = Sends::default();
        for seq in 0..m {
            sends
                .time(&probe, producer.insert_one(seq, true))
                .await
                .map_err(baseline)?;
            pb.inc(1);
            tokio::time::sleep(Duration::from_millis(rand::random_range(5..=25))).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !probe.all_ran() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.notify_one();
        consumer
            .await
            .expect("raw consumer task")
            .map_err(baseline)?;
        pb.finish();
        match probe.latency(&sends) {
            Ok(l) => r.latency_ms = Some(l),
            Err(why) => r.latency_refused = Some(why),
        }
        sc.clear().await?;
    }

    let mut bloat = None;
    if on(Phase::Bloat) {
        let ErrandDb::Pg(pg) = &sc.errand_db else {
            return Err(CliError::Refused(
                "the bloat phase measures Postgres' held-snapshot trap: run it with a postgres:// URL"
                    .into(),
            ));
        };
        let [clean, held, after] = args.bloat_secs[..] else {
            return Err(CliError::Refused(format!(
                "--bloat-secs takes three lengths in seconds (clean, held, after), e.g. 30,60,60; got {:?}",
                args.bloat_secs
            )));
        };
        let secs = [clean, held, after];
        bloat = Some(bloat::run(&sc.store, pg, args.bloat_rate, secs, w).await?);
        sc.clear().await?;
    }

    let fleet = if on(Phase::Fleet) {
        let ErrandDb::Pg(pg) = &sc.errand_db else {
            return Err(CliError::Refused(
                "the fleet phase counts Postgres transactions: run it with a postgres:// URL"
                    .into(),
            ));
        };
        let pg = pg.clone();
        let warmup = Duration::from_secs(args.fleet_warmup_secs);
        let window = Duration::from_secs(args.fleet_secs.max(1));
        match fleet::run(url, &pg, &args.fleet_workers, warmup, window).await {
            Ok(f) => Some(f),
            // Refused (too many for `max_connections`) or a worker that would not start:
            // the scratch schema goes all the same.
            Err(e) => {
                sc.remove().await;
                return Err(e);
            }
        }
    } else {
        None
    };

    let workflow = if on(Phase::Workflow) {
        let (mut plain, mut flow, mut enqueues) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=PROCESS_ROUNDS {
            let probe = Probe::new(n);
            let pb = bar(
                args.json,
                n.into(),
                &format!("plain jobs {round}/{PROCESS_ROUNDS}"),
            );
            let t = Instant::now();
            errand_side::enqueue_batch(&client, n, BATCH, &ProgressBar::hidden()).await?;
            let done = errand_side::process(&sc.store, &probe, w, &pb).await?;
            pb.finish();
            plain.push(t.elapsed().as_secs_f64());
            e.duplicates += probe.duplicates();
            e.lost += probe.lost().max(done.not_completed);
            sc.clear().await?;
            let probe = Probe::new(n);
            let pb = bar(
                args.json,
                n.into(),
                &format!("workflow {round}/{PROCESS_ROUNDS}"),
            );
            let t = Instant::now();
            errand_side::enqueue_fan_out_in(&client, n).await?;
            enqueues.push(t.elapsed().as_secs_f64());
            let done = errand_side::process(&sc.store, &probe, w, &pb).await?;
            pb.finish();
            flow.push(t.elapsed().as_secs_f64());
            e.duplicates += probe.duplicates();
            e.lost += probe.lost().max(done.not_completed);
            sc.clear().await?;
        }
        let (plain_s, workflow_s) = (median(plain), median(flow));
        Some(WorkflowCost {
            jobs: n,
            plain_s,
            workflow_s,
            workflow_enqueue_s: median(enqueues),
            ratio: workflow_s / plain_s,
        })
    } else {
        None
    };

    if on(Phase::Idle) {
        let pb = bar(args.json, args.idle_secs, "errand idle (s)");
        let ticker = {
            let pb = pb.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    pb.inc(1);
                }
            })
        };
        let (qps, cpu) =
            errand_side::idle(&sc.store, &Probe::new(1), args.idle_secs, args.idle_queues).await;
        ticker.abort();
        pb.finish();
        e.idle_queries_per_s = Some(qps);
        e.idle_cpu_pct = Some(cpu);
    }

    (e.files_mb, r.files_mb) = sc.file_sizes();
    let report = Report {
        store: sc.kind,
        jobs: n,
        concurrency: w,
        queue_limit: args.queue_limit,
        idle_queues: on(Phase::Idle).then_some(args.idle_queues),
        ratio: Ratio {
            enqueue_single: ratio(e.enqueue_single_per_s, r.enqueue_single_per_s),
            enqueue_batch: ratio(e.enqueue_batch_per_s, r.enqueue_batch_per_s),
            enqueue_copy: ratio(e.enqueue_copy_per_s, r.enqueue_copy_per_s),
            process: ratio(e.process_per_s, r.process_per_s),
        },
        errand: e,
        raw: r,
        prune_backlog,
        bloat,
        fleet,
        workflow,
    };
    sc.remove().await;
    Ok(report)
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// The summary table.
pub fn print_table(out: &mut impl std::io::Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "\nerrand bench on {} — {} jobs, concurrency {}\n",
        r.store, r.jobs, r.concurrency
    )?;
    let lat = |l: Option<Latency>, f: fn(&Latency) -> f64| l.as_ref().map(f);
    let rows: Vec<Vec<String>> = vec![
        vec![
            "enqueue single (jobs/s)".into(),
            num(r.errand.enqueue_single_per_s, 0),
            num(r.raw.enqueue_single_per_s, 0),
            num(r.ratio.enqueue_single, 2),
        ],
        vec![
            "enqueue single, no NOTIFY (jobs/s)".into(),
            "-".into(),
            num(r.raw.enqueue_single_no_notify_per_s, 0),
            String::new(),
        ],
        vec![
            "enqueue batch (jobs/s)".into(),
            num(r.errand.enqueue_batch_per_s, 0),
            num(r.raw.enqueue_batch_per_s, 0),
            num(r.ratio.enqueue_batch, 2),
        ],
        vec![
            "enqueue 10,000s vs COPY (jobs/s)".into(),
            num(r.errand.enqueue_copy_per_s, 0),
            num(r.raw.enqueue_copy_per_s, 0),
            num(r.ratio.enqueue_copy, 2),
        ],
        vec![
            "process (jobs/s)".into(),
            num(r.errand.process_per_s, 0),
            num(r.raw.process_per_s, 0),
            num(r.ratio.process, 2),
        ],
        vec![
            "latency p50 (ms)".into(),
            num(lat(r.errand.latency_ms, |l| l.p50), 2),
            num(lat(r.raw.latency_ms, |l| l.p50), 2),
            String::new(),
        ],
        vec![
            "latency p95 (ms)".into(),
            num(lat(r.errand.latency_ms, |l| l.p95), 2),
            num(lat(r.raw.latency_ms, |l| l.p95), 2),
            String::new(),
        ],
        vec![
            "latency p99 (ms)".into(),
            num(lat(r.errand.latency_ms, |l| l.p99), 2),
            num(lat(r.raw.latency_ms, |l| l.p99), 2),
            String::new(),
        ],
        vec![
            "  of which the enqueue call p50".into(),
            num(lat(r.errand.latency_ms, |l| l.enqueue_p50), 2),
            num(lat(r.raw.latency_ms, |l| l.enqueue_p50), 2),
            String::new(),
        ],
        vec![
            "  then to the start p50".into(),
            num(lat(r.errand.latency_ms, |l| l.after_enqueue_p50), 2),
            num(lat(r.raw.latency_ms, |l| l.after_enqueue_p50), 2),
            String::new(),
        ],
        vec![
            "latency floor (ms)".into(),
            num(lat(r.errand.latency_ms, |l| l.floor_ms), 3),
            num(lat(r.raw.latency_ms, |l| l.floor_ms), 3),
            String::new(),
        ],
        vec![
            "idle queries/s".into(),
            num(r.errand.idle_queries_per_s, 2),
            "-".into(),
            String::new(),
        ],
        vec![
            "idle CPU %".into(),
            num(r.errand.idle_cpu_pct, 2),
            "-".into(),
            String::new(),
        ],
        vec![
            "peak RSS (MiB)".into(),
            num(r.errand.peak_rss_mb, 1),
            "-".into(),
            String::new(),
        ],
        vec![
            "database + WAL at the end (MiB)".into(),
            num(r.errand.files_mb, 1),
            num(r.raw.files_mb, 1),
            String::new(),
        ],
        vec![
            "duplicates / lost".into(),
            format!("{} / {}", r.errand.duplicates, r.errand.lost),
            format!("{} / {}", r.raw.duplicates, r.raw.lost),
            String::new(),
        ],
    ];
    crate::output::table(out, &["", "errand", "raw", "errand/raw"], &rows)?;
    if let Some(b) = &r.bloat {
        writeln!(
            out,
            "\nbloat: {} jobs/s offered, concurrency {}; not started {}, duplicates {}",
            b.rate, b.concurrency, b.not_started, b.duplicates
        )?;
        let rows: Vec<Vec<String>> = b
            .windows
            .iter()
            .map(|w| {
                let p = |f: fn(&bloat::Pickup) -> f64| num(w.pickup_ms.as_ref().map(f), 2);
                vec![
                    format!("{} ({} s)", w.name, w.secs),
                    num(Some(w.started_per_s), 0),
                    p(|l| l.p50),
                    p(|l| l.p95),
                    p(|l| l.p99),
                    w.dead_tuples.to_string(),
                    w.max_dead_tuples.to_string(),
                ]
            })
            .collect();
        crate::output::table(
            out,
            &[
                "window",
                "started/s",
                "pickup p50 ms",
                "p95",
                "p99",
                "dead tuples at end",
                "most",
            ],
            &rows,
        )?;
    }
    if let Some(f) = &r.fleet {
        writeln!(
            out,
            "\nidle fleets: {} s warm-up, {} s counted",
            f.warmup_secs, f.window_secs
        )?;
        let rows: Vec<Vec<String>> = f
            .sizes
            .iter()
            .map(|s| {
                vec![
                    s.workers.to_string(),
                    num(Some(s.registered_after_s), 2),
                    num(Some(s.transactions_per_s), 2),
                    num(Some(s.per_worker), 2),
                    num(s.allowed_per_s, 2),
                    s.connections.to_string(),
                ]
            })
            .collect();
        crate::output::table(
            out,
            &[
                "workers",
                "registered after s",
                "transactions/s",
                "per worker",
                "allowed",
                "connections",
            ],
            &rows,
        )?;
    }
    for (side, s) in [("errand", &r.errand), ("raw", &r.raw)] {
        if let Some(why) = &s.latency_refused {
            writeln!(out, "{side} latency refused: {why}")?;
        }
    }
    if let Some(p) = r.prune_backlog {
        writeln!(
            out,
            "old completed jobs: {} stored, {} pruned by the worker's retention during errand's latency phase",
            p.stored, p.pruned_during_latency
        )?;
    }
    if let Some(w) = r.workflow {
        writeln!(
            out,
            "workflow: {} jobs enqueued and run in {:.2} s as plain jobs, {:.2} s as one fan-out/fan-in workflow ({:.2}×; its enqueue {:.2} s)",
            w.jobs, w.plain_s, w.workflow_s, w.ratio, w.workflow_enqueue_s
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two jobs sent: job 0 starts a realistic while after its enqueue, job 1 "starts" before
    /// its enqueue could have reached the database (a run left over from elsewhere).
    fn two_sends(probe: &Probe) -> Sends {
        let mut sends = Sends::default();
        for _ in 0..2 {
            let sent = probe.now_ns();
            sends.sent_ns.push(sent);
            sends.returned_ns.push(sent + 1_000_000); // a 1 ms enqueue call
        }
        sends
    }

    #[test]
    fn a_job_that_starts_sooner_than_the_database_can_deliver_refuses_the_phase() {
        let probe = Probe::new(2);
        let sends = two_sends(&probe);
        probe.started_ns[0].store(sends.sent_ns[0] + 1_500_000, Ordering::SeqCst);
        probe.started_ns[1].store(sends.sent_ns[1] + 2_000, Ordering::SeqCst); // 2 µs
        let why = probe
            .latency(&sends)
            .expect_err("an impossible sample refuses");
        assert!(
            why.contains("1 of 2 jobs started sooner than 0.500 ms"),
            "{why}"
        );
    }

    #[test]
    fn sound_samples_give_percentiles_above_the_floor() {
        let probe = Probe::new(2);
        let sends = two_sends(&probe);
        probe.started_ns[0].store(sends.sent_ns[0] + 1_500_000, Ordering::SeqCst);
        probe.started_ns[1].store(sends.sent_ns[1] + 600_000, Ordering::SeqCst);
        let lat = probe.latency(&sends).expect("sound");
        assert_eq!(lat.samples, 2);
        assert_eq!(lat.floor_ms, 0.5);
        assert!(lat.p50 >= lat.floor_ms && lat.p99 >= 1.4, "{lat:?}");
        // Both calls took 1 ms; the jobs started 0.5 ms after one returned and 0.4 ms
        // before the other did: the upper median of the two.
        assert_eq!(lat.enqueue_p50, 1.0);
        assert_eq!(lat.after_enqueue_p50, 0.5);
    }
}
