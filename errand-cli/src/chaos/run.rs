//! `errand chaos`: enqueue ledger jobs, run worker processes, kill them at random moments,
//! cut their database connections (Postgres), optionally restart the database, and check
//! that every job ends with no run repeated except those held by a killed worker.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use errand::store::Store;
use errand::{AnyStore, Client, JobState, ListFilter, PgStore, SqliteStore};
use serde::Serialize;

use super::{Ledger, LedgerJob};
use crate::CliError;

/// `errand chaos` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Jobs to enqueue.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: u32,
    /// Worker processes kept running.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// SIGKILLs (each followed by a replacement worker).
    #[arg(long, default_value_t = 20)]
    pub kills: u32,
    /// Seconds over which the kills are spread.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Simulated work per job, in milliseconds (the default makes 20,000 jobs on 4 workers
    /// last about as long as the kill phase).
    #[arg(long, default_value_t = 50)]
    pub work_ms: u64,
    /// Lease of the workers, in milliseconds (a killed worker's jobs are rescued after it).
    #[arg(long, default_value_t = 2_000)]
    pub lease_ms: u64,
    /// A shell command that restarts the database, run once half-way (e.g.
    /// "pg_ctlcluster 15 main restart").
    #[arg(long)]
    pub restart_db: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Pass the worker processes' logs (warnings, or what `RUST_LOG` asks for) to stderr.
    #[arg(long)]
    pub worker_logs: bool,
    /// Enqueue this many workflows instead of `--jobs` plain jobs: each of 10–20 steps, each
    /// step waiting for up to three earlier ones, and a last step that waits for all the
    /// others whatever their ends (a batch's `on_complete` callback). Checks that every
    /// workflow ends, no step starts before its dependencies completed, and no step runs
    /// again except where a kill explains it.
    #[arg(long, default_value_t = 0)]
    pub workflows: u32,
}

/// What a chaos run found.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// Jobs enqueued.
    pub jobs: u64,
    /// Jobs completed at the end.
    pub completed: u64,
    /// Jobs enqueued but not final at the end (must be 0).
    pub lost: u64,
    /// Runs beyond one per job.
    pub duplicate_runs: u64,
    /// Jobs held (claimed) by a worker at the moment it was killed, summed over kills.
    pub in_flight_at_kills: u64,
    /// Repeated runs that no kill explains: runs beyond the first of a job, less the runs of
    /// that job's attempts a killed worker held. Must be 0 when nothing but kills happened;
    /// a connection cut or restart longer than the lease may add some (allowed).
    pub unexplained_repeats: u64,
    /// Up to ten repeated jobs no kill explains, as `job:attempt@pid,…` (for diagnosis).
    pub unexplained_sample: Vec<String>,
    /// Jobs held by the workers when the database restarted (their leases may run out while
    /// it is down, and then they run again: allowed by the guarantees).
    pub in_flight_at_restart: u64,
    /// Kills done.
    pub kills: u32,
    /// Worker connections terminated with `pg_terminate_backend` (Postgres).
    pub backends_terminated: u64,
    /// Whether the database was restarted.
    pub db_restarted: bool,
    /// Longest time from a kill until every job the killed worker held was running again
    /// elsewhere or final, in seconds.
    pub max_recovery_s: f64,
    /// Wall time of the run, in seconds.
    pub elapsed_s: f64,
    /// Seconds from the start of the run until every worker process had registered (the
    /// worker registry); `null` if they had not within a minute.
    pub workers_ready_s: Option<f64>,
    /// Jobs finished per second from then until the last was final: the fleet's throughput
    /// once it is up (start-up excluded); `null` when not every worker registered or the
    /// jobs were all final by then.
    pub jobs_per_s_when_ready: Option<f64>,
    /// Workflows enqueued (`--workflows`; 0: plain jobs).
    pub workflows: u64,
    /// Workflows with a step not final at the end (must be 0).
    pub workflows_unfinished: u64,
    /// Steps whose run started before one of their dependencies had completed (must be 0).
    pub early_starts: u64,
    /// Callback steps (each workflow's last) that ran more than once (a kill may explain
    /// one; `unexplained_repeats` counts those it does not).
    pub callback_repeats: u64,
    /// `lost == 0 && duplicate_runs <= in_flight_at_kills + in_flight_at_restart`, and in
    /// workflow mode no unfinished workflow, no early start, no unexplained repeat.
    pub pass: bool,
}

struct Scratch {
    backend: AnyStore,
    args: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

async fn scratch(url: &str) -> Result<Scratch, CliError> {
    if crate::open::is_postgres(url) {
        let schema = format!("errand_chaos_{}", std::process::id());
        let store = PgStore::builder().url(url).schema(&schema).open().await?;
        Ok(Scratch {
            backend: AnyStore::Postgres(store),
            args: vec![
                "--database-url".into(),
                url.into(),
                "--schema".into(),
                schema,
            ],
            _dir: None,
        })
    } else {
        let dir = crate::open::scratch_dir_beside(url, "errand-chaos-").map_err(CliError::Io)?;
        let file = format!("sqlite://{}/chaos.db", dir.path().display());
        let store = SqliteStore::open(&file).await?;
        Ok(Scratch {
            backend: AnyStore::Sqlite(store),
            args: vec!["--database-url".into(), file],
            _dir: Some(dir),
        })
    }
}

fn spawn_worker(args: &[String], chaos: &ChaosArgs) -> Result<Child, CliError> {
    let exe = std::env::current_exe().map_err(CliError::Io)?;
    Command::new(exe)
        .args(args)
        .args(["chaos-worker", "--concurrency", "10", "--poll-ms", "100"])
        .args(["--lease-ms", &chaos.lease_ms.to_string()])
        .stdout(Stdio::null())
        .stderr(if chaos.worker_logs {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .map_err(CliError::Io)
}

/// Jobs held by worker process `pid` (claimed, running or buffered): id → attempt.
async fn held_by(store: &dyn Store, pid: u32) -> Result<HashMap<i64, i32>, CliError> {
    let tag = format!(":{pid}:");
    let mut held = HashMap::new();
    let mut filter = ListFilter::new().state(JobState::Running).limit(1000);
    loop {
        let page = store.list(&filter).await?;
        let last = page.last().map(|j| j.id);
        for j in page {
            if j.attempted_by.as_deref().is_some_and(|w| w.contains(&tag)) {
                held.insert(j.id, j.attempt);
            }
        }
        match last {
            Some(id) => filter.before_id = Some(id),
            None => return Ok(held),
        }
    }
}

/// Runs a chaos session and reports.
pub async fn chaos(url: &str, args: &ChaosArgs) -> Result<ChaosReport, CliError> {
    let started = Instant::now();
    let sc = scratch(url).await?;
    let store = std::sync::Arc::new(sc.backend.clone());
    let ledger = Ledger::of(&sc.backend);
    ledger
        .ensure()
        .await
        .map_err(errand::StoreError::database)?;
    let client = Client::new(store.clone());
    let mut workflow_ids = Vec::new();
    let mut jobs = u64::from(args.jobs);
    if args.workflows > 0 {
        jobs = 0;
        for _ in 0..args.workflows {
            let (wf, steps) = random_workflow(args.work_ms);
            jobs += steps;
            workflow_ids.push(client.enqueue_workflow(wf).await?.id);
        }
    } else {
        let seqs: Vec<u32> = (0..args.jobs).collect();
        for chunk in seqs.chunks(1000) {
            client
                .enqueue_many(chunk.iter().map(|_| LedgerJob {
                    work_ms: args.work_ms,
                }))
                .await?;
        }
    }
    let mut workers: Vec<Child> = (0..args.workers.max(1))
        .map(|_| spawn_worker(&sc.args, args))
        .collect::<Result<_, _>>()?;

    let open = ListFilter::new().unfinished();
    // The fleet's throughput is counted from when every worker is up: start-ups (twenty
    // processes connecting at once) are not the queue's speed.
    let ready = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if store.workers().await?.len() >= workers.len() {
                return Ok::<_, CliError>(Some((Instant::now(), store.count(&open).await?)));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(None)
    }
    .await?;
    // Kills at random moments; half-way, the connection cut (and the restart, if asked).
    let mut events: Vec<(Duration, bool)> = (0..args.kills)
        .map(|_| {
            let at = args.duration as f64 * rand::random_range(0.05..0.95);
            (Duration::from_secs_f64(at), true)
        })
        .collect();
    events.push((Duration::from_secs_f64(args.duration as f64 / 2.0), false));
    events.sort();
    let (mut kills, mut in_flight, mut terminated, mut restarted) = (0u32, 0u64, 0u64, false);
    let mut held_at_kills: HashSet<(i64, i32)> = HashSet::new();
    let mut at_restart = 0u64;
    let recoveries: Arc<std::sync::Mutex<Vec<f64>>> = Arc::default();
    let mut watchers = Vec::new();
    let phase = Instant::now();
    for (at, is_kill) in events {
        if let Some(wait) = at.checked_sub(phase.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if store.count(&open).await.unwrap_or(1) == 0 {
            break; // all done before this event
        }
        if !is_kill {
            if let Some(pg) = sc.backend.as_postgres() {
                terminated = terminate_workers(pg, &workers).await;
            }
            if let Some(cmd) = &args.restart_db {
                at_restart = store
                    .count(&ListFilter::new().state(JobState::Running))
                    .await
                    .unwrap_or(0);
                let cmd = cmd.clone();
                // May take seconds (a stop, a pause, a start): off the async threads.
                restarted = tokio::task::spawn_blocking(move || {
                    Command::new("sh")
                        .args(["-c", &cmd])
                        .status()
                        .is_ok_and(|s| s.success())
                })
                .await
                .unwrap_or(false);
            }
            continue;
        }
        let victim = rand::random_range(0..workers.len());
        let pid = workers[victim].id();
        // Freeze it first, so the jobs it holds cannot change between counting and killing.
        let _ = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status();
        let held = held_by(&*store, pid).await.unwrap_or_default();
        let _ = workers[victim].kill();
        let _ = workers[victim].wait();
        let killed_at = Instant::now();
        kills += 1;
        in_flight += held.len() as u64;
        held_at_kills.extend(held.iter().map(|(id, attempt)| (*id, *attempt)));
        workers[victim] = spawn_worker(&sc.args, args)?;
        let (store, recoveries) = (store.clone(), recoveries.clone());
        watchers.push(tokio::spawn(async move {
            // Recovered when no job is still held by the dead worker's attempt.
            loop {
                let mut still = 0;
                for (id, attempt) in &held {
                    if let Ok(Some(j)) = store.get(*id).await {
                        if j.state == JobState::Running && j.attempt == *attempt {
                            still += 1;
                        }
                    }
                }
                if still == 0 {
                    recoveries
                        .lock()
                        .unwrap()
                        .push(killed_at.elapsed().as_secs_f64());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    // Let everything finish: bounded by the work left plus rescues.
    let deadline =
        Instant::now() + Duration::from_secs(120) + Duration::from_millis(args.work_ms * jobs / 10);
    while store.count(&open).await.unwrap_or(1) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_final = Instant::now();
    for w in &mut workers {
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
    }
    for w in &mut workers {
        let _ = w.wait();
    }
    for w in watchers {
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }

    let completed = store
        .count(&ListFilter::new().state(JobState::Completed))
        .await?;
    let lost = store.count(&open).await?;
    let runs = ledger.runs().await.map_err(errand::StoreError::database)?;
    let distinct: HashSet<i64> = runs.iter().map(|r| r.0).collect();
    let duplicate_runs = (runs.len() - distinct.len()) as u64;
    let (unexplained_repeats, unexplained_sample) = unexplained(&runs, &held_at_kills);
    let checked = check_workflows(&*store, &ledger, &workflow_ids).await?;
    let max_recovery_s = recoveries
        .lock()
        .unwrap()
        .iter()
        .copied()
        .fold(0.0, f64::max);
    let report = ChaosReport {
        store: sc.backend.kind(),
        jobs,
        completed,
        lost,
        duplicate_runs,
        in_flight_at_kills: in_flight,
        unexplained_repeats,
        unexplained_sample,
        in_flight_at_restart: at_restart,
        kills,
        backends_terminated: terminated,
        db_restarted: restarted,
        max_recovery_s,
        elapsed_s: started.elapsed().as_secs_f64(),
        workers_ready_s: ready.map(|(at, _)| (at - started).as_secs_f64()),
        jobs_per_s_when_ready: ready.and_then(|(at, open_then)| {
            let secs = (all_final - at).as_secs_f64();
            (open_then > 0 && lost == 0 && secs > 0.0).then(|| open_then as f64 / secs)
        }),
        workflows: workflow_ids.len() as u64,
        workflows_unfinished: checked.unfinished,
        early_starts: checked.early_starts,
        callback_repeats: checked.callback_repeats,
        pass: lost == 0
            && duplicate_runs <= in_flight + at_restart
            && (workflow_ids.is_empty()
                || (checked.unfinished == 0
                    && checked.early_starts == 0
                    && unexplained_repeats == 0)),
    };
    if let Some(pg) = sc.backend.as_postgres() {
        let _ = sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", pg.schema()))
            .execute(pg.pool())
            .await;
    }
    Ok(report)
}

/// A workflow of 10–20 ledger steps: step `s{i}` waits for up to three random earlier steps;
/// the last, `callback`, waits for every other whatever their ends. Returns it and its size.
fn random_workflow(work_ms: u64) -> (errand::Workflow, u64) {
    let n = rand::random_range(9..=19usize);
    let mut wf = errand::Workflow::new("chaos");
    for i in 0..n {
        let mut deps: Vec<String> = Vec::new();
        if i > 0 {
            for _ in 0..rand::random_range(0..=3usize) {
                let d = format!("s{}", rand::random_range(0..i));
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        wf = wf.add_after(format!("s{i}"), LedgerJob { work_ms }, deps);
    }
    (
        wf.on_complete("callback", LedgerJob { work_ms }),
        n as u64 + 1,
    )
}

#[derive(Debug, Default)]
struct Checked {
    unfinished: u64,
    early_starts: u64,
    callback_repeats: u64,
}

/// Each workflow's end, from the store, against the ledger: every step final, and none
/// started before each of its dependencies' completing run had ended (both times from this
/// machine's clock; the release happens in the completion's commit, after that run ended).
/// A run whose end could not be recorded (0) is not checked.
async fn check_workflows(
    store: &dyn Store,
    ledger: &Ledger,
    ids: &[String],
) -> Result<Checked, CliError> {
    let mut c = Checked::default();
    if ids.is_empty() {
        return Ok(c);
    }
    // job → its runs' (attempt, start, end).
    let mut runs: HashMap<i64, Vec<(i32, i64, i64)>> = HashMap::new();
    for (job, attempt, start, end) in ledger.times().await.map_err(errand::StoreError::database)? {
        runs.entry(job).or_default().push((attempt, start, end));
    }
    for id in ids {
        let Some(wf) = store.workflow(id).await? else {
            c.unfinished += 1;
            continue;
        };
        if !wf.is_finished() {
            c.unfinished += 1;
        }
        let attempts: HashMap<i64, i32> =
            wf.steps.iter().map(|s| (s.job.id, s.job.attempt)).collect();
        for s in &wf.steps {
            let mine = runs.get(&s.job.id).map(Vec::as_slice).unwrap_or(&[]);
            if s.step == "callback" && mine.len() > 1 {
                c.callback_repeats += 1;
            }
            let Some(first) = mine.iter().map(|r| r.1).min() else {
                continue;
            };
            for d in &s.deps {
                // The run that completed the dependency: its last attempt's.
                let last = attempts.get(&d.parent).copied();
                let end = runs
                    .get(&d.parent)
                    .and_then(|r| r.iter().filter(|r| Some(r.0) == last).map(|r| r.2).max());
                let early = match end {
                    Some(0) => false, // its end could not be written (a cut connection)
                    Some(end) => first < end,
                    None => true, // never ran, yet its dependent did
                };
                if early {
                    c.early_starts += 1;
                    tracing::warn!(workflow = %id, step = %s.step, dependency = %d.step,
                        "a step started before its dependency's run ended");
                }
            }
        }
    }
    Ok(c)
}

/// Repeats no kill explains: per job, runs beyond the first less the runs whose attempt a
/// killed worker held.
fn unexplained(runs: &[(i64, i32, i64)], held: &HashSet<(i64, i32)>) -> (u64, Vec<String>) {
    let mut by_job: HashMap<i64, Vec<(i32, i64)>> = HashMap::new();
    for (job, attempt, pid) in runs {
        by_job.entry(*job).or_default().push((*attempt, *pid));
    }
    let mut total = 0u64;
    let mut sample = Vec::new();
    let mut jobs: Vec<_> = by_job.into_iter().filter(|(_, r)| r.len() > 1).collect();
    jobs.sort_unstable_by_key(|(job, _)| *job);
    for (job, mut job_runs) in jobs {
        let killed = job_runs
            .iter()
            .filter(|(attempt, _)| held.contains(&(job, *attempt)))
            .count();
        let extra = (job_runs.len() - 1).saturating_sub(killed) as u64;
        if extra > 0 {
            total += extra;
            if sample.len() < 10 {
                job_runs.sort_unstable();
                let runs: Vec<String> = job_runs.iter().map(|(a, p)| format!("{a}@{p}")).collect();
                sample.push(format!("{job}:{}", runs.join(",")));
            }
        }
    }
    (total, sample)
}

/// Terminates every backend of the worker processes (pool and LISTEN connections).
async fn terminate_workers(pg: &PgStore, workers: &[Child]) -> u64 {
    let names: Vec<String> = workers
        .iter()
        .flat_map(|w| {
            let base = format!("errand:{}", w.id());
            [format!("{base}:listen"), base]
        })
        .collect();
    sqlx::query_scalar::<_, bool>(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ANY($1)",
    )
    .bind(names)
    .fetch_all(pg.pool())
    .await
    .map(|v| v.into_iter().filter(|b| *b).count() as u64)
    .unwrap_or(0)
}

/// Text for people.
pub fn print_report(out: &mut impl std::io::Write, r: &ChaosReport) -> std::io::Result<()> {
    writeln!(
        out,
        "errand chaos on {}: {} jobs, {} kills, {} backends terminated{} in {:.1} s",
        r.store,
        r.jobs,
        r.kills,
        r.backends_terminated,
        if r.db_restarted {
            ", database restarted"
        } else {
            ""
        },
        r.elapsed_s
    )?;
    writeln!(
        out,
        "completed {}  lost {}  duplicate runs {}  in flight at kills {} (at restart {})  max recovery {:.2} s",
        r.completed, r.lost, r.duplicate_runs, r.in_flight_at_kills, r.in_flight_at_restart, r.max_recovery_s
    )?;
    if r.workflows > 0 {
        writeln!(
            out,
            "workflows {}  unfinished {}  steps started before a dependency ended {}  callbacks run twice {} (unexplained repeats {})",
            r.workflows, r.workflows_unfinished, r.early_starts, r.callback_repeats, r.unexplained_repeats
        )?;
    }
    if let (Some(ready), Some(rate)) = (r.workers_ready_s, r.jobs_per_s_when_ready) {
        writeln!(
            out,
            "every worker up after {ready:.1} s; from then {rate:.0} jobs/s"
        )?;
    }
    if r.unexplained_repeats > 0 {
        writeln!(
            out,
            "repeats no kill explains: {} (job:attempt@pid) {}",
            r.unexplained_repeats,
            r.unexplained_sample.join(" ")
        )?;
    }
    writeln!(out, "{}", if r.pass { "PASS" } else { "FAIL" })
}
