//! `--phases fleet` (Postgres): what an idle fleet costs the database. For each size N, N
//! `errand chaos-worker` processes (this binary, the library's defaults: a 10 s leader
//! lease, a 1 s poll, a 10 s registry report) share the bench's schema with nothing to do;
//! once every one is in the worker registry and the warm-up has passed (each pooled
//! connection prepares each statement the first time it runs it, over the first minute or
//! two), the database's transactions are counted over a window (`pg_stat_database`), and
//! the connections the fleet holds (`pg_stat_activity`). One leader runs maintenance, so the
//! target is at most one transaction a second per follower plus the leader's.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use errand::store::Store;
use errand::PgStore;
use serde::Serialize;

use crate::CliError;

/// The connections one idle worker process holds, about (its pool's, the keeper's, the
/// lane's, `LISTEN`'s; docs/benchmarks.md counts them): used to refuse a fleet the server
/// cannot admit before starting it.
const CONNECTIONS_PER_WORKER: i64 = 7;

/// One fleet size's figures.
#[derive(Debug, Clone, Serialize)]
pub struct FleetSize {
    /// Worker processes.
    pub workers: u32,
    /// Seconds from the first spawn until every worker was in the registry.
    pub registered_after_s: f64,
    /// Transactions per second on the database, every worker together (the bench's own two
    /// readings excluded).
    pub transactions_per_s: f64,
    /// `transactions_per_s / workers`.
    pub per_worker: f64,
    /// The target for this size: one a second per follower plus the one-worker figure
    /// (the leader's), when the fleet of one was measured in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_per_s: Option<f64>,
    /// Connections the fleet held at the end of the window.
    pub connections: i64,
}

/// What the fleet phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    /// Seconds every size was left to settle before counting.
    pub warmup_secs: u64,
    /// Seconds counted.
    pub window_secs: u64,
    /// One entry per size, in the order run.
    pub sizes: Vec<FleetSize>,
}

/// The worker processes of one size; killed if still running when dropped.
struct Processes(Vec<Child>);

impl Processes {
    fn spawn(n: u32, url: &str, schema: &str) -> Result<Self, CliError> {
        let exe = std::env::current_exe().map_err(CliError::Io)?;
        let mut all = Processes(Vec::with_capacity(n as usize));
        for _ in 0..n {
            let child = Command::new(&exe)
                .args(["--database-url", url, "--schema", schema, "chaos-worker"])
                .args(["--leader-lease-ms", "10000", "--presence-ms", "10000"])
                .args(["--poll-ms", "1000", "--exit-with-parent"])
                .env("RUST_LOG", "error")
                // Held open by this process: if it dies, the worker sees the end and stops.
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(CliError::Io)?;
            all.0.push(child);
        }
        Ok(all)
    }

    /// SIGTERM to each (a leader resigns, every worker deregisters), then SIGKILL to any
    /// still running after 15 s.
    async fn stop(mut self) {
        for c in &self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline
            && self.0.iter_mut().any(|c| matches!(c.try_wait(), Ok(None)))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for c in &mut self.0 {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// A worker that exited on its own, with its status: it could not start.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.iter_mut().find_map(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn db_error(what: &str) -> impl FnOnce(sqlx::Error) -> CliError + '_ {
    move |e| CliError::Baseline(format!("{what}: {e}"))
}

/// Transactions committed and rolled back in this database so far, read on one
/// connection of this bench's after flushing its own counts (other backends flush theirs
/// at most once a second while busy, and within 10 s of going idle).
async fn transactions(conn: &mut sqlx::PgConnection) -> Result<i64, CliError> {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .map_err(db_error("flushing statistics"))?;
    sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database \
         WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error("reading pg_stat_database"))
}

/// Connections to this database of the given processes (named `errand:<pid>…` by the
/// store: its pool, its listener, its lane).
async fn connections(pg: &PgStore, pids: &[u32]) -> Result<i64, CliError> {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name LIKE 'errand:%' \
           AND split_part(application_name, ':', 2) = ANY($1)",
    )
    .bind(pids)
    .fetch_one(pg.pool())
    .await
    .map_err(db_error("reading pg_stat_activity"))
}

/// Runs each size in turn: spawn, wait for the registry, warm up, count, stop.
pub(crate) async fn run(
    url: &str,
    pg: &PgStore,
    sizes: &[u32],
    warmup: Duration,
    window: Duration,
) -> Result<Fleet, CliError> {
    let max: i64 = sqlx::query_scalar("SELECT current_setting('max_connections')::int8")
        .fetch_one(pg.pool())
        .await
        .map_err(db_error("reading max_connections"))?;
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
    )
    .fetch_one(pg.pool())
    .await
    .map_err(db_error("reading pg_stat_activity"))?;
    let mut out = Fleet {
        warmup_secs: warmup.as_secs(),
        window_secs: window.as_secs(),
        sizes: Vec::new(),
    };
    for &n in sizes {
        let need = i64::from(n) * CONNECTIONS_PER_WORKER + open;
        if need > max {
            return Err(CliError::Refused(format!(
                "{n} idle workers hold about {CONNECTIONS_PER_WORKER} connections each, \
                 {need} with the ones open now, and this server allows {max}: raise it \
                 (`ALTER SYSTEM SET max_connections = {}`, then restart Postgres) or \
                 measure fewer with --fleet-workers",
                need + 20
            )));
        }
        let start = Instant::now();
        let mut procs = Processes::spawn(n, url, pg.schema())?;
        let registered = loop {
            if let Some(status) = procs.exited() {
                procs.stop().await;
                return Err(CliError::Refused(format!(
                    "a fleet worker exited ({status}) before it registered: run `errand \
                     --database-url … chaos-worker` by hand to see why"
                )));
            }
            let pids: Vec<u32> = procs.0.iter().map(Child::id).collect();
            let up = pg.workers().await?;
            if pids.iter().all(|p| up.iter().any(|w| w.pid == *p)) {
                break start.elapsed();
            }
            if start.elapsed() > Duration::from_secs(60) {
                procs.stop().await;
                return Err(CliError::Refused(format!(
                    "{n} fleet workers did not all register within 60 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tokio::time::sleep(warmup.saturating_sub(start.elapsed())).await;
        let mut conn = pg
            .pool()
            .acquire()
            .await
            .map_err(db_error("a connection for the readings"))?;
        let before = transactions(&mut conn).await?;
        tokio::time::sleep(window).await;
        // This connection's own: the first reading and the second's flush.
        let counted = transactions(&mut conn).await? - before - 2;
        drop(conn);
        let pids: Vec<u32> = procs.0.iter().map(Child::id).collect();
        let held = connections(pg, &pids).await?;
        let alive = procs.exited().is_none();
        procs.stop().await;
        if !alive {
            return Err(CliError::Refused(format!(
                "a worker of the fleet of {n} exited while it was measured"
            )));
        }
        let per_s = counted.max(0) as f64 / window.as_secs_f64().max(1e-9);
        let leader = out.sizes.iter().find(|s| s.workers == 1);
        out.sizes.push(FleetSize {
            workers: n,
            registered_after_s: registered.as_secs_f64(),
            transactions_per_s: per_s,
            per_worker: per_s / f64::from(n.max(1)),
            allowed_per_s: leader.map(|l| l.transactions_per_s + f64::from(n - 1)),
            connections: held,
        });
    }
    Ok(out)
}
