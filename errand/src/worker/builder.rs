//! [`WorkerBuilder`]: queues, job types and runtime settings, validated by `build`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use errand_core::{Store, MAX_QUEUE_LEN};
use tokio::sync::mpsc;

use super::pacing::Prefetch;
use super::registry::Registry;
use super::{completer, producer, Config, QueueConfig, QueueOptions, Shared, Worker};
use crate::clock::Clock;
use crate::maintenance::{self, CronEntry};
use crate::{Job, JobOptions, WorkerError, DEFAULT_MAX_PAYLOAD_BYTES};
use errand_core::check_name;

/// Longest worker id accepted.
const MAX_WORKER_ID_LEN: usize = 256;

/// Configures a [`Worker`]: which job types it runs, which queues with what concurrency, and
/// the runtime's timings. Every setting has a default suited to production.
pub struct WorkerBuilder<S, St> {
    store: S,
    state: St,
    registry: Registry,
    errors: Vec<WorkerError>,
    queues: Vec<(String, QueueOptions)>,
    config: Config,
    /// Run-time job defaults (timeout, backoff), checked at build.
    job_defaults: JobOptions,
    worker_id: Option<String>,
    crons: Vec<CronEntry>,
    /// Cron entries may enqueue kinds this worker does not run.
    foreign_cron_kinds: bool,
}

impl<S, St> std::fmt::Debug for WorkerBuilder<S, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("queues", &self.queues)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: Store, St: Clone + Send + Sync + 'static> WorkerBuilder<S, St> {
    pub(crate) fn new(store: S, state: St) -> Self {
        WorkerBuilder {
            store,
            state,
            registry: Registry::default(),
            errors: Vec::new(),
            queues: Vec::new(),
            config: Config {
                lease: Duration::from_secs(30),
                poll_interval: producer::DEFAULT_POLL,
                fetch_cooldown: producer::DEFAULT_COOLDOWN,
                grace_period: Duration::from_secs(10),
                default_timeout: None,
                default_backoff: errand_core::Backoff::default(),
                completer_linger: completer::DEFAULT_LINGER,
                completer_batch: 1000,
                stall_warning: Duration::from_secs(1),
                clock: Clock::default(),
                maintenance: maintenance::Settings::default(),
            },
            job_defaults: JobOptions::new(),
            worker_id: None,
            crons: Vec::new(),
            foreign_cron_kinds: false,
        }
    }

    /// Runs jobs of type `J`. Registering the same kind twice fails at [`build`](Self::build).
    pub fn register<J: Job<State = St>>(mut self) -> Self {
        if let Err(e) = self.registry.register::<J>(self.state.clone()) {
            self.errors.push(e);
        }
        self
    }

    /// Enqueues `job` at every time `schedule` names: five fields (minute, hour, day of
    /// month, month, day of week), six with seconds first, or a nickname such as `@hourly`
    /// or `@daily`; in UTC, or in the IANA time zone a `TZ=` (or `CRON_TZ=`) prefix names:
    /// `"TZ=Europe/Berlin 30 2 * * *"`. A bad schedule, zone or name fails at
    /// [`build`](Self::build).
    ///
    /// In a zone with daylight saving time, a local time the clocks skip (02:30 on the
    /// spring-forward day) runs at the first instant after the jump (03:00), once; a local
    /// time that happens twice (02:30 on the fall-back day) runs once, at the first; a
    /// schedule by interval (`*/15 * * * *`) keeps its pace in real time through both.
    ///
    /// Each tick is one job, however many workers carry the same entry: it is enqueued
    /// `scheduled` with the unique key `cron:<name>:<tick>` (and the tags `cron` and
    /// `cron:<name>`: `errand cron list` shows them) as soon as the tick before it
    /// has passed, and runs like any job of its type (queue, retries, timeout from its
    /// options). [`JobContext::scheduled_at`](crate::JobContext::scheduled_at) gives its tick
    /// on the first attempt. While no worker runs, the tick already enqueued waits and runs
    /// late, once, when one returns; later ticks are skipped, not caught up. The worker that
    /// enqueues need not run the job: any worker with `J` registered on its queue does.
    /// Changing an entry's schedule or removing it leaves the tick already enqueued, which
    /// still runs once; cancel it to skip it. Workers' clocks must agree to within the
    /// shortest period.
    ///
    /// ```no_run
    /// # use errand::{Worker, SqliteStore, Job, JobContext, JobError, Outcome};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Report { kind: String }
    /// # impl Job for Report {
    /// #     const KIND: &'static str = "report";
    /// #     type State = ();
    /// #     async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) }
    /// # }
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = SqliteStore::open("errand.db").await?;
    /// let worker = Worker::builder(store, ())
    ///     .register::<Report>()
    ///     .queue("default", 10)
    ///     // 03:00 UTC every day.
    ///     .cron("nightly-report", "0 3 * * *", Report { kind: "sales".into() })
    ///     // 09:00 in Berlin on weekdays, summer or winter.
    ///     .cron("morning", "TZ=Europe/Berlin 0 9 * * 1-5", Report { kind: "daily".into() })
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn cron<J: Job>(self, name: impl Into<String>, schedule: &str, job: J) -> Self {
        self.cron_with(name, schedule, job, JobOptions::new())
    }

    /// [`cron`](Self::cron) with overrides (queue, priority, attempts, …). The options
    /// cannot set a run time, a delay or a unique key: the schedule sets those.
    pub fn cron_with<J: Job>(
        mut self,
        name: impl Into<String>,
        schedule: &str,
        job: J,
        opts: JobOptions,
    ) -> Self {
        let name = name.into();
        let entry = match opts.cron_conflict() {
            Some(field) => Err(format!(
                "the options set {field}: the schedule sets each tick's run time and unique key, remove it"
            )),
            None => crate::client::prepare(job, opts, DEFAULT_MAX_PAYLOAD_BYTES, chrono::Utc::now())
                .map_err(|e| e.to_string())
                .and_then(|template| {
                    CronEntry::new(name.clone(), schedule, template, chrono::Utc::now())
                }),
        };
        match entry {
            Ok(entry) => self.crons.push(entry),
            Err(reason) => self.errors.push(WorkerError::InvalidCron { name, reason }),
        }
        self
    }

    /// Works the queue `name`: with a concurrency (`.queue("mail", 10)`), or with
    /// [`QueueOptions`] (`.queue("mail", QueueOptions::new(10).prefetch(0))`).
    pub fn queue(mut self, name: impl Into<String>, options: impl Into<QueueOptions>) -> Self {
        self.queues.push((name.into(), options.into()));
        self
    }

    /// How long a claimed job stays reserved without a heartbeat (default 30 s). The
    /// heartbeat renews it every third of that; a worker that dies loses its jobs to the
    /// rescuer after at most this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// Fallback polling when no wake-up arrives (default 1 s): picks up jobs inserted by
    /// other processes. [`QueueOptions::poll_interval`] overrides it per queue. On a store
    /// that hears other processes (Postgres, whose inserts `NOTIFY`) the worker polls ten
    /// times less often: there the poll is only a safety net.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// Shortest time between two claims of one queue (default 0;
    /// [`QueueOptions::fetch_cooldown`] overrides it per queue). Claims batch by
    /// themselves under load (slots freed while one claim is in flight are filled by the
    /// next); a cooldown trades throughput for fewer, larger claims. Measured: 5 ms capped
    /// a no-op queue of concurrency 10 at ~850 jobs/s; 0 ran 8–10k jobs/s (errand bench).
    pub fn fetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.fetch_cooldown = cooldown;
        self
    }

    /// How long shutdown waits for running jobs before stopping them (default 10 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.config.grace_period = grace;
        self
    }

    /// Options for the jobs this worker runs whose own options leave them unset: `timeout`
    /// and `backoff`, the two a worker applies when it runs a job (see [`JobOptions`] for the
    /// resolution rule). Any other setting is fixed at enqueue, and fails
    /// [`build`](Self::build) here.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use errand::{Backoff, JobOptions};
    /// let defaults = JobOptions::new()
    ///     .timeout(Duration::from_secs(300))
    ///     .backoff(Backoff::constant(Duration::from_secs(5)));
    /// ```
    pub fn job_defaults(mut self, defaults: JobOptions) -> Self {
        self.job_defaults = defaults;
        self
    }

    /// A job whose code runs this long without yielding (a blocking call inside async code)
    /// is logged as a warning naming it, and counted in `errand_jobs_stalled_total`
    /// (default 1 s). Such code holds one of the runtime's threads: it delays every other
    /// task there and cannot be stopped by a timeout until it yields. Run it with
    /// [`JobContext::blocking`](crate::JobContext::blocking).
    pub fn stall_warning(mut self, after: Duration) -> Self {
        self.config.stall_warning = after;
        self
    }

    /// Runs this worker as if its machine's clock were off by `skew`, to test that a wrong
    /// clock does no harm where the store keeps time (Postgres). Not for production use.
    #[doc(hidden)]
    pub fn clock_skew(mut self, skew: chrono::TimeDelta) -> Self {
        self.config.clock = Clock::skewed(skew);
        self.config.maintenance.clock = Clock::skewed(skew);
        self
    }

    /// Reads the time from tokio's clock instead of the system's, for tests: with the
    /// runtime's clock paused (`#[tokio::test(start_paused = true)]`), backoffs, delays,
    /// snoozes, leases and cron ticks pass in virtual time, so a test of a job that retries
    /// after minutes runs in milliseconds. Give the [`Client`](crate::Client) that enqueues
    /// the same clock ([`Client::tokio_clock`](crate::Client::tokio_clock)).
    ///
    /// Use it with [`MemoryStore`](crate::MemoryStore): tokio advances a paused clock
    /// whenever the runtime is idle, which includes waiting for a database's I/O thread, so
    /// on SQLite or Postgres leases would appear to run out. Under a running clock it is
    /// the system's time, read monotonically. The heartbeat and completer then run on the
    /// application's runtime rather than a thread of their own, and stalls are not watched
    /// ([`stall_warning`](Self::stall_warning)).
    pub fn tokio_clock(mut self) -> Self {
        self.config.clock = Clock::tokio();
        self.config.maintenance.clock = Clock::tokio();
        self
    }

    /// How often due scheduled and retryable jobs are made available (default 1 s).
    pub fn schedule_interval(mut self, every: Duration) -> Self {
        self.config.maintenance.schedule_interval = every;
        self
    }

    /// How often expired leases are looked for (default 15 s).
    pub fn rescue_interval(mut self, every: Duration) -> Self {
        self.config.maintenance.rescue_interval = every;
        self
    }

    /// How often the pruner looks for final jobs past their retention (default 60 s; each
    /// pass deletes them in bounded batches until none is left).
    pub fn prune_interval(mut self, every: Duration) -> Self {
        self.config.maintenance.prune_interval = every;
        self
    }

    /// How long final jobs are kept before this worker's pruner deletes them, per final state
    /// (default [`Retention::default`](crate::Retention): completed and cancelled 24 h,
    /// discarded 7 days; [`Retention::forever`](crate::Retention::forever) prunes nothing).
    pub fn retention(mut self, keep: crate::Retention) -> Self {
        self.config.maintenance.retention = keep;
        self
    }

    /// How often the maintenance leader publishes job counts per queue and state as gauges
    /// (default 10 s).
    pub fn stats_interval(mut self, every: Duration) -> Self {
        self.config.maintenance.stats_interval = every;
        self
    }

    /// How often this worker refreshes its record in the store's worker registry (default
    /// 10 s): its queues, how many jobs it holds, when it last reported (`errand workers
    /// list`, the dashboard's workers page). A record silent for three intervals shows as
    /// gone; the leader removes those silent for an hour.
    pub fn presence_interval(mut self, every: Duration) -> Self {
        self.config.maintenance.presence_interval = every;
        self
    }

    /// The maintenance leader's lease (default 10 s; 100 ms to 1 h). One worker per store
    /// runs the scheduler, the rescuer, the pruner and the stats gauges, renewing its lease
    /// every third of it; the others try as often, so when the leader dies another takes
    /// over within 1⅓ leases (at once when it shuts down). Cron runs on every worker.
    pub fn leader_lease(mut self, lease: Duration) -> Self {
        self.config.maintenance.leader_lease = lease;
        self
    }

    /// Lets cron entries enqueue jobs of kinds this worker does not register (other workers
    /// run them). Without it, such an entry fails [`build`](Self::build): a schedule whose
    /// jobs nothing here can run is usually a missing `register`.
    pub fn allow_foreign_cron_kinds(mut self) -> Self {
        self.foreign_cron_kinds = true;
        self
    }

    /// Overrides the worker id recorded as `attempted_by` (default `host:pid:random`; 1–256
    /// bytes, no control characters).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// Validates the configuration and builds the worker.
    pub fn build(mut self) -> Result<Worker<S>, WorkerError> {
        if let Some(e) = self.errors.drain(..).next() {
            return Err(e);
        }
        if self.registry.is_empty() {
            return Err(WorkerError::NoJobs);
        }
        if self.queues.is_empty() {
            return Err(WorkerError::NoQueues);
        }
        let setting = |setting: &'static str, reason: &str| WorkerError::InvalidSetting {
            setting,
            reason: reason.to_owned(),
        };
        if let Some(field) = self.job_defaults.enqueue_only_setting() {
            return Err(setting(
                "job_defaults",
                &format!(
                    "sets `{field}`, which is fixed when a job is enqueued: set it in the job \
                     type's options or the enqueue call; a worker applies only timeout and backoff"
                ),
            ));
        }
        self.config.default_timeout = self.job_defaults.timeout_setting();
        if let Some(backoff) = self.job_defaults.backoff_setting() {
            backoff
                .check()
                .map_err(|r| setting("job_defaults", &format!("backoff: {r}")))?;
            self.config.default_backoff = backoff;
        }
        check_durations(&self.config)?;
        let queues = self.resolve_queues()?;
        self.warn_unworked_queues(&queues);
        let mut names = std::collections::HashSet::new();
        if let Some(dup) = self.crons.iter().find(|c| !names.insert(&c.name)) {
            return Err(WorkerError::InvalidCron {
                name: dup.name.clone(),
                reason: "two entries have this name: each tick's unique key is made of it".into(),
            });
        }
        if !self.foreign_cron_kinds {
            let kinds: std::collections::HashSet<&str> = self.registry.kinds().collect();
            if let Some(c) = self.crons.iter().find(|c| !kinds.contains(c.kind())) {
                return Err(WorkerError::InvalidCron {
                    name: c.name.clone(),
                    reason: format!(
                        "its jobs are of kind '{}', which this worker does not run: register \
                         the type here, or call allow_foreign_cron_kinds() if other workers run it",
                        c.kind()
                    ),
                });
            }
        }
        self.config.maintenance.cron = std::mem::take(&mut self.crons).into();
        if let Some(id) = &self.worker_id {
            // Written as `attempted_by` by every claim: a bad one would fail them all.
            check_name("worker", id, MAX_WORKER_ID_LEN).map_err(|r| setting("worker_id", &r))?;
        }
        let store = Arc::new(self.store);
        let (tx, rx) = mpsc::channel(completer::BACKLOG);
        let queue_states = queues
            .iter()
            .map(|q| (q.name.clone(), Arc::default()))
            .collect::<HashMap<_, _>>();
        let shared = Arc::new(Shared {
            store: store.clone() as Arc<dyn Store>,
            registry: self.registry,
            config: self.config,
            worker_id: self.worker_id.unwrap_or_else(default_worker_id),
            inflight: Default::default(),
            completer: tx,
            outcomes_written: Default::default(),
            lost: tokio::sync::watch::channel(None).0,
            queues: queue_states,
            leading: Arc::new(tokio::sync::watch::channel(false).0),
            poll_health: Default::default(),
        });
        Ok(Worker {
            store,
            shared,
            queues,
            completer_rx: rx,
        })
    }
}

impl<S, St> WorkerBuilder<S, St> {
    /// Each queue's options, checked and resolved against the worker's settings.
    fn resolve_queues(&self) -> Result<Vec<QueueConfig>, WorkerError> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(self.queues.len());
        for (name, o) in &self.queues {
            let bad = |reason: String| WorkerError::InvalidQueue {
                queue: name.clone(),
                reason,
            };
            check_name("queue", name, MAX_QUEUE_LEN).map_err(bad)?;
            if o.concurrency == 0 {
                return Err(bad("concurrency is 0: use at least 1".into()));
            }
            if !seen.insert(name.clone()) {
                return Err(bad("listed twice".into()));
            }
            if let Prefetch::Fixed(n) = o.prefetch {
                if n > MAX_PREFETCH {
                    return Err(bad(format!(
                        "prefetch {n} is over {MAX_PREFETCH}: claimed jobs hold leases while they wait"
                    )));
                }
            }
            let poll_interval = o.poll_interval.unwrap_or(self.config.poll_interval);
            let fetch_cooldown = o.fetch_cooldown.unwrap_or(self.config.fetch_cooldown);
            check_range("poll_interval", poll_interval, MS, HOUR)
                .map_err(|e| bad(e.to_string()))?;
            check_range("fetch_cooldown", fetch_cooldown, Duration::ZERO, MINUTE)
                .map_err(|e| bad(e.to_string()))?;
            out.push(QueueConfig {
                name: name.clone(),
                concurrency: o.concurrency,
                prefetch: o.prefetch,
                poll_interval,
                fetch_cooldown,
                prefetch_bytes: o.prefetch_bytes,
            });
        }
        Ok(out)
    }

    /// Warns about each registered kind whose type's queue ([`Job::QUEUE`]) this worker does
    /// not work: its jobs wait for another worker, or for ever.
    fn warn_unworked_queues(&self, queues: &[QueueConfig]) {
        for (kind, queue) in self.registry.default_queues() {
            if !queues.iter().any(|q| q.name == queue) {
                tracing::warn!(
                    kind,
                    queue,
                    "jobs of kind '{kind}' go to queue '{queue}' (its Job::QUEUE), which this \
                     worker does not work: add .queue(\"{queue}\", n), or make sure another worker does"
                );
            }
        }
    }
}

/// Largest fixed prefetch per queue.
const MAX_PREFETCH: usize = 10_000;
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const MS: Duration = Duration::from_millis(1);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Every duration the builder takes, against its allowed range: a value out of range (say
/// `Duration::MAX`, which no timestamp can hold) is refused, never wrapped or zeroed.
fn check_durations(c: &Config) -> Result<(), WorkerError> {
    let m = &c.maintenance;
    let mut checks = vec![
        // Under 300 ms heartbeats (every third of the lease) could not keep up.
        ("lease", c.lease, Duration::from_millis(300), DAY),
        ("poll_interval", c.poll_interval, MS, HOUR),
        ("fetch_cooldown", c.fetch_cooldown, Duration::ZERO, MINUTE),
        ("grace_period", c.grace_period, Duration::ZERO, DAY),
        (
            "schedule_interval",
            m.schedule_interval,
            Duration::from_millis(10),
            DAY,
        ),
        (
            "rescue_interval",
            m.rescue_interval,
            Duration::from_millis(10),
            DAY,
        ),
        (
            "prune_interval",
            m.prune_interval,
            Duration::from_millis(10),
            DAY,
        ),
        (
            "stats_interval",
            m.stats_interval,
            Duration::from_millis(10),
            DAY,
        ),
        (
            "presence_interval",
            m.presence_interval,
            Duration::from_millis(10),
            HOUR,
        ),
        (
            "leader_lease",
            m.leader_lease,
            Duration::from_millis(100),
            HOUR,
        ),
        (
            "stall_warning",
            c.stall_warning,
            Duration::from_millis(10),
            DAY,
        ),
    ];
    if let Some(t) = c.default_timeout {
        checks.push(("job_defaults", t, MS, errand_core::MAX_DELAY));
    }
    for (_, keep) in m.retention.by_state() {
        checks.push(("retention", keep, Duration::ZERO, errand_core::MAX_DELAY));
    }
    for (setting, value, min, max) in checks {
        check_range(setting, value, min, max)?;
    }
    Ok(())
}

/// `value` within `min..=max`, or the error naming `setting`.
fn check_range(
    setting: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), WorkerError> {
    if value < min || value > max {
        let max = if max == errand_core::MAX_DELAY {
            "100 years".to_owned()
        } else {
            format!("{max:?}")
        };
        return Err(WorkerError::InvalidSetting {
            setting,
            reason: format!("{value:?} is out of range: use {min:?} to {max}"),
        });
    }
    Ok(())
}

/// This machine's name (`localhost` when it cannot be read).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn default_worker_id() -> String {
    let host = hostname();
    format!(
        "{host}:{}:{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}
