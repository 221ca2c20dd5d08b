//! `--phases bloat` (Postgres): jobs flow at a fixed rate while, for the middle window, a
//! session holds a snapshot (`REPEATABLE READ`, idle in transaction) — the known trap: every
//! dead tuple and dead index entry since its start stays, and claims walk them. Reports, per
//! window (clean, held, after), the pickup latency (job start minus its enqueue), the jobs
//! started per second against the rate offered, and the dead tuples of the jobs table.

use std::time::{Duration, Instant};

use errand::{Client, PgStore};
use serde::Serialize;

use super::errand_side::{self, BenchJob, BenchStore};
use super::{measure, Probe};
use crate::CliError;

/// Pickup latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pickup {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// One window of the bloat phase.
#[derive(Debug, Clone, Serialize)]
pub struct BloatWindow {
    /// `clean`, `held` (a snapshot held open throughout) or `after`.
    pub name: &'static str,
    /// Its length in seconds.
    pub secs: u64,
    /// Jobs enqueued per second in it.
    pub offered_per_s: f64,
    /// Jobs started per second in it.
    pub started_per_s: f64,
    /// Pickup latency of the jobs enqueued in it (`null` if none started).
    pub pickup_ms: Option<Pickup>,
    /// `n_dead_tup` of the jobs table at its end.
    pub dead_tuples: i64,
    /// The most `n_dead_tup` read in it (read once a second).
    pub max_dead_tuples: i64,
}

/// What the bloat phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct Bloat {
    /// Jobs offered per second.
    pub rate: u32,
    /// Worker concurrency.
    pub concurrency: usize,
    /// The three windows.
    pub windows: Vec<BloatWindow>,
    /// Jobs offered that had not started a minute after the last window (must be 0).
    pub not_started: u64,
    /// Jobs that started more than once (must be 0).
    pub duplicates: u64,
}

async fn dead_tuples(pg: &PgStore) -> Result<i64, CliError> {
    sqlx::query_scalar(
        "SELECT coalesce(max(n_dead_tup), 0) FROM pg_stat_user_tables \
         WHERE schemaname = $1 AND relname = 'jobs'",
    )
    .bind(pg.schema())
    .fetch_one(pg.pool())
    .await
    .map_err(|e| CliError::Baseline(format!("reading dead tuples: {e}")))
}

/// Runs the three windows (`secs`: clean, held, after) at `rate` jobs/s.
pub(crate) async fn run(
    store: &BenchStore,
    pg: &PgStore,
    rate: u32,
    secs: [u64; 3],
    concurrency: usize,
) -> Result<Bloat, CliError> {
    let rate = rate.max(1);
    let total: u64 = secs.iter().map(|s| s * u64::from(rate)).sum();
    let total = u32::try_from(total)
        .map_err(|_| CliError::Refused("the bloat phase's rate × duration is too large".into()))?;
    let probe = Probe::new(total);
    let handle = errand_side::worker(store, &probe, concurrency);
    let client = Client::new(store.clone());
    let mut sent_ns = vec![0_u64; total as usize];
    let mut next: u32 = 0;
    let mut holder = None;
    // Per window: its name and length, its jobs (first seq, end seq), its span on the
    // probe's clock, and the dead tuples at its end.
    let mut bounds = Vec::new();
    for (w, (&len, name)) in secs.iter().zip(["clean", "held", "after"]).enumerate() {
        if w == 1 {
            // A session that took a snapshot and then sits idle in its transaction.
            let mut conn = pg
                .pool()
                .acquire()
                .await
                .map_err(errand::StoreError::database)?;
            for sql in [
                "BEGIN ISOLATION LEVEL REPEATABLE READ",
                "SELECT count(*) FROM pg_class",
            ] {
                sqlx::query(sql)
                    .execute(&mut *conn)
                    .await
                    .map_err(errand::StoreError::database)?;
            }
            holder = Some(conn);
        }
        if w == 2 {
            if let Some(mut conn) = holder.take() {
                sqlx::query("ROLLBACK")
                    .execute(&mut *conn)
                    .await
                    .map_err(errand::StoreError::database)?;
            }
        }
        let first = next;
        let start_ns = probe.now_ns();
        let start = Instant::now();
        let end_seq = first + (len as u32) * rate;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut max_dead = 0_i64;
        let mut dead_read = Instant::now();
        while next < end_seq {
            tick.tick().await;
            if dead_read.elapsed() >= Duration::from_secs(1) {
                dead_read = Instant::now();
                max_dead = max_dead.max(dead_tuples(pg).await?);
            }
            let due = first + ((start.elapsed().as_secs_f64() * f64::from(rate)) as u32);
            let upto = due.min(end_seq);
            if upto <= next {
                continue;
            }
            let now = probe.now_ns();
            for s in next..upto {
                sent_ns[s as usize] = now;
            }
            client
                .enqueue_many((next..upto).map(|seq| BenchJob { seq }))
                .await?;
            next = upto;
        }
        // The rest of the window, if enqueueing finished early.
        let left = Duration::from_secs(len).saturating_sub(start.elapsed());
        tokio::time::sleep(left).await;
        let end_ns = probe.now_ns();
        let dead = dead_tuples(pg).await?;
        let max_dead = max_dead.max(dead);
        bounds.push((name, len, first, end_seq, start_ns, end_ns, dead, max_dead));
    }
    // Let the last jobs start (bounded), then stop the worker.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !probe.all_ran() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.shutdown().await;
    let (not_started, duplicates) = (probe.lost(), probe.duplicates());
    let started = probe.started();
    let out = bounds
        .into_iter()
        .map(|(name, len, first, end, from_ns, to_ns, dead, max_dead)| {
            let micros: Vec<u64> = (first..end)
                .filter_map(|s| {
                    let st = started[s as usize];
                    (st > 0).then(|| st.saturating_sub(sent_ns[s as usize]) / 1000)
                })
                .collect();
            let in_window = started
                .iter()
                .filter(|&&st| st >= from_ns && st < to_ns)
                .count();
            BloatWindow {
                name,
                secs: len,
                offered_per_s: f64::from(end - first) / len.max(1) as f64,
                started_per_s: in_window as f64 / ((to_ns - from_ns) as f64 / 1e9),
                pickup_ms: measure::percentiles(&micros, 0.0).map(|l| Pickup {
                    p50: l.p50,
                    p95: l.p95,
                    p99: l.p99,
                }),
                dead_tuples: dead,
                max_dead_tuples: max_dead,
            }
        })
        .collect();
    Ok(Bloat {
        rate,
        concurrency,
        windows: out,
        not_started,
        duplicates,
    })
}
