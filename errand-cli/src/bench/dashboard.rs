//! `errand bench-dashboard`: seeds a store with millions of jobs (mostly completed, some
//! available, some discarded: what a busy store holds under a retention of days) and times
//! each dashboard page's server work on it, through the router itself (no network, no
//! browser). Figures go to docs/benchmarks.md; nothing here is a timed test.

use std::io::Write;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use errand::store::Store;
use errand::AnyStore;
use tower::ServiceExt;

use crate::open::is_postgres;
use crate::CliError;

/// `errand bench-dashboard` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DashboardBenchArgs {
    /// Jobs in the store: the rest of `--available` and `--discarded` are completed.
    #[arg(long, default_value_t = 10_000_000)]
    pub jobs: u64,
    /// Of which available (the newest).
    #[arg(long, default_value_t = 100_000)]
    pub available: u64,
    /// Of which discarded (spread through the table).
    #[arg(long, default_value_t = 10_000)]
    pub discarded: u64,
    /// Requests per page (the median and the slowest are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// The dashboard's query timeout in milliseconds (pages slower than it degrade).
    #[arg(long, default_value_t = 2_000)]
    pub query_timeout_ms: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One page's timings.
#[derive(Debug, serde::Serialize)]
pub struct PageTiming {
    /// The path requested.
    pub path: String,
    /// Median server time (ms).
    pub median_ms: f64,
    /// Slowest (ms).
    pub max_ms: f64,
    /// Whether the page said part of it was too slow or failed.
    pub degraded: bool,
    /// The HTTP status.
    pub status: u16,
}

/// What the bench measured.
#[derive(Debug, serde::Serialize)]
pub struct DashboardReport {
    /// `postgres` or `sqlite`.
    pub store: &'static str,
    /// Jobs in the store.
    pub jobs: u64,
    /// Seconds spent seeding (0 when the store already held them).
    pub seed_secs: f64,
    /// Per page.
    pub pages: Vec<PageTiming>,
}

const QUEUES: u64 = 5;

async fn seed(
    store: &AnyStore,
    a: &DashboardBenchArgs,
    out: &mut impl Write,
) -> Result<f64, CliError> {
    let have = store.count(&errand::ListFilter::new()).await?;
    if have >= a.jobs {
        writeln!(out, "store already holds {have} jobs: reusing them")?;
        return Ok(0.0);
    }
    if have > 0 {
        return Err(CliError::Refused(format!(
            "the store holds {have} jobs, fewer than --jobs {}: use an empty database (or schema) for the bench",
            a.jobs
        )));
    }
    let t = Instant::now();
    let chunk = 1_000_000u64;
    let (n, avail, disc) = (a.jobs, a.available, a.discarded.max(1));
    let every = (n / disc).max(1);
    let mut from = 1;
    while from <= n {
        let to = (from + chunk - 1).min(n);
        // Ids are g: the newest `available` are available, every `every`-th of the rest
        // discarded, the others completed; queues and kinds cycle.
        let state = format!(
            "CASE WHEN g > {n} - {avail} THEN 'available' WHEN g % {every} = 0 THEN 'discarded' ELSE 'completed' END"
        );
        match store {
            AnyStore::Postgres(pg) => {
                let sql = format!(
                    "INSERT INTO \"{schema}\".jobs (kind, queue, args, state, attempt, max_attempts, run_at, created_at,
                        attempted_at, finalized_at, errors, tags)
                     SELECT 'Kind' || (g % 7), 'q' || (g % {QUEUES}), jsonb_build_object('n', g, 'text', 'payload of job ' || g),
                            s, CASE WHEN s = 'available' THEN 0 ELSE 1 END, 3,
                            now() - interval '1 second' * ({n} - g) / 100, now() - interval '1 second' * ({n} - g) / 100,
                            CASE WHEN s = 'available' THEN NULL ELSE now() END,
                            CASE WHEN s = 'available' THEN NULL ELSE now() END,
                            CASE WHEN s = 'discarded' THEN '[{{\"attempt\":1,\"at\":\"2026-01-01T00:00:00Z\",\"message\":\"boom\",\"panic\":false}}]'::jsonb ELSE '[]'::jsonb END,
                            '[\"bench\"]'::jsonb
                     FROM (SELECT g, {state} AS s FROM generate_series({from}, {to}) g) x",
                    schema = pg.schema()
                );
                sqlx::query(&sql)
                    .execute(pg.pool())
                    .await
                    .map_err(|e| CliError::Baseline(e.to_string()))?;
            }
            AnyStore::Sqlite(sq) => {
                let now = chrono::Utc::now().timestamp_micros();
                let sql = format!(
                    "WITH RECURSIVE c(g) AS (SELECT {from} UNION ALL SELECT g + 1 FROM c WHERE g < {to})
                     INSERT INTO errand_jobs (kind, queue, args, state, attempt, max_attempts, run_at, created_at,
                        attempted_at, finalized_at, errors, tags)
                     SELECT 'Kind' || (g % 7), 'q' || (g % {QUEUES}), json_object('n', g, 'text', 'payload of job ' || g),
                            s, CASE WHEN s = 'available' THEN 0 ELSE 1 END, 3,
                            {now} - ({n} - g) * 10000, {now} - ({n} - g) * 10000,
                            CASE WHEN s = 'available' THEN NULL ELSE {now} END,
                            CASE WHEN s = 'available' THEN NULL ELSE {now} END,
                            CASE WHEN s = 'discarded' THEN '[{{\"attempt\":1,\"at\":\"2026-01-01T00:00:00Z\",\"message\":\"boom\",\"panic\":false}}]' ELSE '[]' END,
                            '[\"bench\"]'
                     FROM (SELECT g, {state} AS s FROM c)"
                );
                sqlx::query(&sql)
                    .execute(sq.pool())
                    .await
                    .map_err(|e| CliError::Baseline(e.to_string()))?;
            }
            _ => {
                return Err(CliError::Refused(
                    "bench-dashboard runs on SQLite or Postgres".into(),
                ))
            }
        }
        writeln!(
            out,
            "seeded {to} of {n} jobs ({:.0} s)",
            t.elapsed().as_secs_f64()
        )?;
        out.flush()?;
        from = to + 1;
    }
    match store {
        AnyStore::Postgres(pg) => {
            let sql = format!("VACUUM ANALYZE \"{}\".jobs", pg.schema());
            sqlx::query(&sql)
                .execute(pg.pool())
                .await
                .map_err(|e| CliError::Baseline(e.to_string()))?;
        }
        AnyStore::Sqlite(sq) => {
            sqlx::query("ANALYZE")
                .execute(sq.pool())
                .await
                .map_err(|e| CliError::Baseline(e.to_string()))?;
        }
        _ => {}
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Seeds (unless the store already holds `--jobs`) and times every page.
pub async fn bench_dashboard(
    url: &str,
    schema: &str,
    a: &DashboardBenchArgs,
    out: &mut impl Write,
) -> Result<DashboardReport, CliError> {
    let store = crate::open_store(url, schema, true).await?;
    let seed_secs = seed(&store, a, out).await?;
    let config = errand_web::Config::new().query_timeout(Duration::from_millis(a.query_timeout_ms));
    let app = errand_web::router(store.clone(), config);
    let newest = store.list(&errand::ListFilter::new().limit(1)).await?;
    let top = newest.first().map_or(1, |r| r.id);
    let mut paths: Vec<String> = [
        "/",
        "/jobs",
        "/jobs?state=available",
        "/jobs?state=discarded",
        "/jobs?state=completed",
        "/jobs?queue=q1",
        "/jobs?queue=q1&state=discarded",
        "/jobs?kind=Kind3",
        "/jobs?tag=bench",
        // Matches nothing: no index narrows a kind, so the list and the count read until
        // the query timeout, and the page says so.
        "/jobs?kind=NoSuchKind",
        "/queues",
        "/workers",
        "/audit",
        "/metrics",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    paths.push(format!("/jobs?before={}", top / 2));
    paths.push(format!("/jobs/{}", top / 2));
    let mut pages = Vec::new();
    for path in paths {
        let mut times = Vec::new();
        let (mut degraded, mut status) = (false, 0);
        for _ in 0..a.runs.max(1) {
            let req = Request::get(&path).body(Body::empty()).expect("request");
            let t = Instant::now();
            let res = app.clone().oneshot(req).await.expect("infallible");
            status = res.status().as_u16();
            let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .map_err(|e| CliError::Refused(e.to_string()))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            let text = String::from_utf8_lossy(&body);
            degraded |= text.contains("class=\"degraded\"")
                || text.contains("source_up{source=\"counts\"} 0");
        }
        times.sort_by(f64::total_cmp);
        pages.push(PageTiming {
            path,
            median_ms: times[times.len() / 2],
            max_ms: *times.last().expect("a run"),
            degraded,
            status,
        });
    }
    Ok(DashboardReport {
        store: if is_postgres(url) {
            "postgres"
        } else {
            "sqlite"
        },
        jobs: store.count(&errand::ListFilter::new()).await.unwrap_or(0),
        seed_secs,
        pages,
    })
}

/// The report as a table.
pub fn print_dashboard(out: &mut impl Write, r: &DashboardReport) -> std::io::Result<()> {
    writeln!(
        out,
        "{} with {} jobs (seeded in {:.0} s)",
        r.store, r.jobs, r.seed_secs
    )?;
    writeln!(
        out,
        "{:<36} {:>10} {:>10} {:>6}  degraded",
        "page", "median ms", "max ms", "status"
    )?;
    for p in &r.pages {
        writeln!(
            out,
            "{:<36} {:>10.1} {:>10.1} {:>6}  {}",
            p.path, p.median_ms, p.max_ms, p.status, p.degraded
        )?;
    }
    Ok(())
}
