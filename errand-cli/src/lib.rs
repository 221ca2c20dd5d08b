//! The `errand` command line: migrate a database, inspect queues and jobs, retry and cancel
//! jobs. `main.rs` only parses arguments and calls [`run`].

pub mod bench;
pub mod chaos;
mod commands;
mod error;
mod open;
mod output;

use std::io::Write;

use clap::{Parser, Subcommand};

pub use chaos::{LedgerJob, CHAOS_QUEUE};
pub use error::CliError;
pub use open::open_store;

/// Operate errand job stores.
#[derive(Debug, Parser)]
#[command(
    name = "errand",
    version,
    about = "Operate errand job stores: migrate, inspect, retry, cancel"
)]
pub struct Cli {
    /// Database URL: sqlite://PATH (or a plain file path), or postgres://USER@HOST:PORT/DB.
    /// Without it: $ERRAND_DATABASE_URL, then $DATABASE_URL (as sqlx and the examples read
    /// it), then sqlite://errand.db.
    #[arg(long, global = true, env = "ERRAND_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Postgres schema holding errand's tables (ignored for SQLite).
    #[arg(long, global = true, env = "ERRAND_SCHEMA", default_value = "errand")]
    pub schema: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The database to work on: `--database-url`, `$ERRAND_DATABASE_URL`, `$DATABASE_URL`,
    /// or `sqlite://errand.db`, the first that is set.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "sqlite://errand.db".to_owned())
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if needed and apply pending schema migrations.
    Migrate,
    /// Job counts by queue and state.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List, show, retry, cancel or delete jobs.
    Jobs {
        /// What to do with jobs.
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// List queues with their state and counts; pause or resume one.
    Queues {
        /// What to do with queues.
        #[command(subcommand)]
        command: QueuesCommand,
    },
    /// The worker processes on this database: queues, concurrency, jobs held, last
    /// heartbeat, which one leads maintenance.
    Workers {
        /// What to do with workers.
        #[command(subcommand)]
        command: WorkersCommand,
    },
    /// Workflows: list them, show one's steps and what each waits for, cancel one.
    Workflows {
        /// What to do with workflows.
        #[command(subcommand)]
        command: WorkflowsCommand,
    },
    /// Cron entries and their next tick.
    Cron {
        /// What to do with cron entries.
        #[command(subcommand)]
        command: CronCommand,
    },
    /// Delete final jobs (completed, discarded, cancelled) that ended longer ago than
    /// `--older-than`, in batches; workers do this by themselves (retention, default 24 h).
    Prune {
        /// Age of the final jobs to delete: a number with s, m, h or d (`90m`, `7d`).
        #[arg(long, value_parser = parse_age)]
        older_than: std::time::Duration,
        /// Only this final state (completed, discarded, cancelled); repeat for several.
        /// Default: all three.
        #[arg(long = "state")]
        states: Vec<errand::JobState>,
        /// Say how many jobs would be deleted, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve the web dashboard for this database: queues, jobs, retry / cancel / delete,
    /// pause / resume, the audit log. Binds 127.0.0.1 unless authentication is configured
    /// (ERRAND_DASHBOARD_USER and ERRAND_DASHBOARD_PASSWORD, or ERRAND_DASHBOARD_TOKEN).
    Dashboard {
        /// Address to listen on (port 0: any free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:9090")]
        bind: std::net::SocketAddr,
        /// Show everything, allow no action (also ERRAND_DASHBOARD_READ_ONLY=1).
        #[arg(long)]
        read_only: bool,
        /// The path a reverse proxy serves the dashboard under, when it strips it from the
        /// requests it passes on (`/ops/jobs`).
        #[arg(long, default_value = "")]
        base_path: String,
    },
    /// The audit log: every action taken from the dashboard or this command line (retry,
    /// cancel, delete, pause, resume, limits, prune), newest first.
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Only entries with ids below this one (paging).
        #[arg(long)]
        before: Option<i64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Measure errand against the fastest hand-written queue on the same database (tokio-postgres or rusqlite).
    Bench(bench::BenchArgs),
    /// Seed a store with millions of jobs and time each dashboard page on it (server time).
    BenchDashboard(bench::dashboard::DashboardBenchArgs),
    /// Kill worker processes at random and prove no job is lost or repeated needlessly.
    Chaos(chaos::ChaosArgs),
    /// Run a worker for the crash and chaos tests (records each run in a ledger table).
    #[command(hide = true)]
    ChaosWorker(chaos::WorkerArgs),
}

/// `errand workers …`
#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Each worker as it last reported itself; `silent` when it has not for three of its
    /// presence intervals (30 s by default: killed, frozen or cut off; forgotten after an
    /// hour).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `errand workflows …`
#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Workflows newest first, with how many steps are in each state.
    List {
        /// How many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Only workflows created before this one (paging).
        #[arg(long)]
        before: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One workflow: each step, its job, state and the steps it waits for.
    Show {
        /// The workflow's id.
        id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cancel every step of a workflow that has not ended (running ones are told to stop).
    Cancel {
        /// The workflow's id.
        id: String,
    },
}

/// `errand cron …`
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Each cron entry the workers carry (from its pending tick in the store): its job's
    /// kind and queue, its next tick and how soon it is due (or how late).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `errand queues …`
#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Each queue: active or paused (and since when), and its jobs still to do by state.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pause a queue on every worker: none starts its jobs; running ones finish; enqueueing
    /// goes on.
    Pause {
        /// The queue.
        queue: String,
    },
    /// Resume a paused queue: workers claim from it again at once.
    Resume {
        /// The queue.
        queue: String,
    },
    /// Set a queue's fleet-wide limits, enforced across every worker and process; a limit
    /// not named is kept, `none` removes one. `errand queues set sync --per-key 1`,
    /// `errand queues set mail --rate 20/s`, `errand queues set mail --max-running none`.
    #[command(group(clap::ArgGroup::new("limits").required(true).multiple(true)))]
    Set {
        /// The queue.
        queue: String,
        /// At most this many of its jobs running at once (1 or more, or `none`).
        #[arg(long, group = "limits", value_parser = parse_count)]
        max_running: Option<Change<u32>>,
        /// At most this many running at once per partition key (1 or more, or `none`).
        #[arg(long, group = "limits", value_parser = parse_count)]
        per_key: Option<Change<u32>>,
        /// At most this many starts per period: `20/s`, `100/m`, `5/500ms`, `1000/h`, or
        /// `none`.
        #[arg(long, group = "limits", value_parser = parse_rate)]
        rate: Option<Change<errand::RateLimit>>,
        /// At most this many starts per period per partition key (as `--rate`), or `none`.
        #[arg(long, group = "limits", value_parser = parse_rate)]
        rate_per_key: Option<Change<errand::RateLimit>>,
        /// Remove every limit.
        #[arg(
            long,
            group = "limits",
            conflicts_with_all = ["max_running", "per_key", "rate", "rate_per_key"]
        )]
        no_limit: bool,
    },
}

/// `errand jobs …`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Which jobs.
        #[command(flatten)]
        filter: Selection,
        /// At most this many jobs (1 to 10,000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Only jobs with an id below this one: the next page after a listing's last id.
        #[arg(long)]
        before: Option<i64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One job in full: payload, attempts, error history.
    Show {
        /// The job's id.
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make a job available now (a discarded or cancelled job gets one more attempt); or
    /// every job a filter selects (`--state discarded --queue mail`).
    Retry {
        /// The job's id (or select jobs with the filter options instead).
        id: Option<i64>,
        /// Which jobs, when no id is given.
        #[command(flatten)]
        filter: Selection,
        /// Also run jobs that already completed (they run again: their effects happen twice).
        #[arg(long)]
        force: bool,
        /// Say how many jobs would be retried, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Cancel a job that is not final; or every job a filter selects.
    Cancel {
        /// The job's id (or select jobs with the filter options instead).
        id: Option<i64>,
        /// Which jobs, when no id is given.
        #[command(flatten)]
        filter: Selection,
        /// Say how many jobs would be cancelled, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a job for good (not a running one: cancel it first); or every job a filter
    /// selects. Its history goes with it; a unique key it held is free again.
    Delete {
        /// The job's id (or select jobs with the filter options instead).
        id: Option<i64>,
        /// Which jobs, when no id is given.
        #[command(flatten)]
        filter: Selection,
        /// Say how many jobs would be deleted, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which jobs a command works on.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selection {
    /// Only jobs in this state; repeat for several (scheduled, available, running, retryable,
    /// completed, discarded, cancelled).
    #[arg(long = "state")]
    pub states: Vec<errand::JobState>,
    /// Only this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only jobs carrying this tag.
    #[arg(long)]
    pub tag: Option<String>,
}

impl Selection {
    /// Whether it selects anything narrower than every job.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty() && self.queue.is_none() && self.kind.is_none() && self.tag.is_none()
    }

    /// As a store filter.
    pub fn filter(&self) -> errand::ListFilter {
        let mut f = errand::ListFilter::new();
        for s in &self.states {
            f = f.state(*s);
        }
        if let Some(q) = &self.queue {
            f = f.queue(q.clone());
        }
        if let Some(k) = &self.kind {
            f = f.kind(k.clone());
        }
        if let Some(t) = &self.tag {
            f = f.tag(t.clone());
        }
        f
    }
}

/// A new value for a setting, or `none` to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<T> {
    /// Set to this.
    Set(T),
    /// Remove.
    Clear,
}

/// A count of 1 or more, or `none`.
fn parse_count(text: &str) -> Result<Change<u32>, String> {
    if text == "none" {
        return Ok(Change::Clear);
    }
    match text.parse::<u32>() {
        Ok(0) => Err("0 would start nothing: use 1 or more, or pause the queue".into()),
        Ok(n) => Ok(Change::Set(n)),
        _ => Err(format!(
            "'{text}': use a whole number of 1 or more, or none"
        )),
    }
}

/// `20/s`, `100/m`, `5/500ms`, `1000/h`, `3/10s`, or `none`.
fn parse_rate(text: &str) -> Result<Change<errand::RateLimit>, String> {
    if text == "none" {
        return Ok(Change::Clear);
    }
    let usage = || {
        format!("'{text}' is not a rate: use STARTS/PERIOD, like 20/s, 100/m, 5/500ms or 1000/h")
    };
    let (starts, period) = text.split_once('/').ok_or_else(usage)?;
    let starts: u32 = starts
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(usage)?;
    let period = period.trim();
    let digits = period
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(period.len());
    let (n, unit) = period.split_at(digits);
    let n: u64 = if n.is_empty() {
        1
    } else {
        n.parse().map_err(|_| usage())?
    };
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(usage()),
    };
    let period = n
        .checked_mul(ms)
        .map(std::time::Duration::from_millis)
        .filter(|d| !d.is_zero() && *d <= errand::store::MAX_RATE_PERIOD)
        .ok_or_else(|| format!("'{text}': the period must be from 1 ms to a day"))?;
    Ok(Change::Set(errand::RateLimit::new(starts, period)))
}

/// `90s`, `30m`, `24h`, `7d`.
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("'{text}' is not an age: use a number with s, m, h or d (7d)"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{text}': the unit must be s, m, h or d (7d)")),
    };
    n.checked_mul(secs)
        .map(std::time::Duration::from_secs)
        .filter(|d| *d <= errand::store::MAX_DELAY)
        .ok_or_else(|| format!("'{text}' is longer than 100 years"))
}

/// Runs one parsed command line, printing to stdout.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let url = cli.database_url();
    let (url, schema) = (url.as_str(), cli.schema.as_str());
    match cli.command {
        Command::Migrate => commands::migrate(url, schema, &mut out).await,
        Command::Stats { json } => {
            let store = open_store(url, schema, false).await?;
            commands::stats(&store, json, &mut out).await
        }
        Command::Jobs { command } => {
            let store = open_store(url, schema, false).await?;
            let audit = commands::audit::of_jobs(&command);
            let mut tee = commands::audit::Tee::new(&mut out);
            let result = commands::jobs(&store, command, &mut tee).await;
            let said = tee.into_said();
            commands::audit::record(&store, audit, result, said).await
        }
        Command::Queues { command } => {
            let store = open_store(url, schema, false).await?;
            let audit = commands::audit::of_queues(&command);
            let mut tee = commands::audit::Tee::new(&mut out);
            let result = commands::queues(&store, command, &mut tee).await;
            let said = tee.into_said();
            commands::audit::record(&store, audit, result, said).await
        }
        Command::Dashboard {
            bind,
            read_only,
            base_path,
        } => {
            let store = commands::dashboard_store(url, schema).await?;
            commands::dashboard(store, url, bind, read_only, &base_path, &mut out).await
        }
        Command::Audit {
            limit,
            before,
            json,
        } => {
            let store = open_store(url, schema, false).await?;
            commands::audit::list(&store, limit, before, json, &mut out).await
        }
        Command::Workers {
            command: WorkersCommand::List { json },
        } => {
            let store = open_store(url, schema, false).await?;
            commands::workers::list(&store, json, &mut out).await
        }
        Command::Workflows { command } => {
            let store = open_store(url, schema, false).await?;
            match command {
                WorkflowsCommand::List {
                    limit,
                    before,
                    json,
                } => {
                    commands::workflows::list(&store, limit, before.as_deref(), json, &mut out)
                        .await
                }
                WorkflowsCommand::Show { id, json } => {
                    commands::workflows::show(&store, &id, json, &mut out).await
                }
                WorkflowsCommand::Cancel { id } => {
                    let audit = Some(commands::audit::Action::new(
                        "workflow.cancel",
                        format!("workflow {id}"),
                    ));
                    let mut tee = commands::audit::Tee::new(&mut out);
                    let result = commands::workflows::cancel(&store, &id, &mut tee).await;
                    let said = tee.into_said();
                    commands::audit::record(&store, audit, result, said).await
                }
            }
        }
        Command::Cron {
            command: CronCommand::List { json },
        } => {
            let store = open_store(url, schema, false).await?;
            commands::cron::list(&store, json, &mut out).await
        }
        Command::Prune {
            older_than,
            states,
            dry_run,
        } => {
            let store = open_store(url, schema, false).await?;
            let audit = (!dry_run).then(|| {
                commands::audit::Action::new(
                    "prune",
                    format!("older than {older_than:?}, states {states:?}"),
                )
            });
            let mut tee = commands::audit::Tee::new(&mut out);
            let result = commands::prune(&store, older_than, &states, dry_run, &mut tee).await;
            let said = tee.into_said();
            commands::audit::record(&store, audit, result, said).await
        }
        Command::Bench(args) => {
            let report = bench::bench(url, &args).await?;
            if args.json {
                writeln!(out, "{}", serde_json::to_string(&report).expect("JSON"))?;
            } else {
                bench::print_table(&mut out, &report)?;
            }
            Ok(())
        }
        Command::BenchDashboard(args) => {
            let report = bench::dashboard::bench_dashboard(url, schema, &args, &mut out).await?;
            if args.json {
                writeln!(out, "{}", serde_json::to_string(&report).expect("JSON"))?;
            } else {
                bench::dashboard::print_dashboard(&mut out, &report)?;
            }
            Ok(())
        }
        Command::Chaos(args) => {
            let report = chaos::chaos(url, &args).await?;
            if args.json {
                writeln!(out, "{}", serde_json::to_string(&report).expect("JSON"))?;
            } else {
                chaos::print_report(&mut out, &report)?;
            }
            if report.pass {
                Ok(())
            } else {
                Err(CliError::Refused(
                    "chaos run failed: jobs lost or run more often than their kills explain".into(),
                ))
            }
        }
        Command::ChaosWorker(args) => chaos::run_worker(url, schema, args).await,
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings), and counts sqlx statements
/// when `errand bench` asks.
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(bench::measure::query_counter())
        .try_init();
}
