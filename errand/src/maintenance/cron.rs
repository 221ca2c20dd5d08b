//! Cron: enqueues each entry's job at the times its schedule names.
//!
//! A schedule is read in UTC, or in the IANA time zone a `TZ=`/`CRON_TZ=` prefix names
//! (`TZ=Europe/Berlin 30 2 * * *`), daylight saving time included: a time the clocks skip
//! (02:30 on the spring-forward day) runs at the first instant after the jump (03:00); a
//! time that happens twice (02:30 on the fall-back day) runs once, at the first; schedules
//! by interval (`*/15 * * * *`) run through both repeated hours, as real time passes.
//!
//! A tick is one job with the unique key `cron:<name>:<tick>` (the tick in RFC 3339, UTC),
//! tagged `cron` and `cron:<name>` (what `errand cron list` reads).
//! It is enqueued `scheduled` as soon as the tick before it has passed, so for a whole period
//! before it is due it exists in a non-final state: every worker running the same entry
//! inserts the same key, the store's unique index keeps one, and the scheduler makes it
//! available at its time. Nothing enqueues a tick whose time has passed, so a tick is never
//! enqueued again after it ran. That holds while the workers' clocks agree to within the
//! shortest period (any NTP-synchronised fleet). When every worker is down, the tick that was
//! already enqueued runs late, once, when one returns; the ticks after it are skipped, not
//! caught up.
//!
//! Each pass sleeps until the earliest entry's next tick (at most a minute); a pass that
//! finds nothing new to enqueue issues no query.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use errand_core::{NewJob, Store, StoreError};

use super::Service;
use crate::client::{count_enqueued, labels};
use crate::clock::Clock;

/// Longest sleep between passes, so a clock jump is noticed within it.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Longest cron entry name accepted.
pub(crate) const MAX_CRON_NAME_LEN: usize = 128;

/// One schedule and the job it enqueues.
#[derive(Debug, Clone)]
pub(crate) struct CronEntry {
    pub(crate) name: String,
    schedule: croner::Cron,
    /// The zone the schedule is read in (`None`: UTC).
    zone: Option<Tz>,
    /// The job of every tick, but for its run time and unique key.
    template: NewJob,
}

impl CronEntry {
    /// The kind of job each tick enqueues.
    pub(crate) fn kind(&self) -> &str {
        &self.template.kind
    }

    /// Parses `pattern` (5 fields from minutes, or 6 from seconds; `@hourly` and the like;
    /// optionally after `TZ=<IANA zone> `) and checks it fires after `now`. The error says
    /// what is wrong.
    pub(crate) fn new(
        name: String,
        pattern: &str,
        mut template: NewJob,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        errand_core::check_name("cron entry", &name, MAX_CRON_NAME_LEN)?;
        let (zone, fields) = split_zone(pattern)?;
        let schedule = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(fields)
            .map_err(|e| {
                format!("schedule {pattern:?} is not a cron expression ({e}): use 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, optionally after TZ=<zone>")
            })?;
        template.tags.push(CRON_TAG.to_owned());
        template.tags.push(format!("{CRON_TAG}:{name}"));
        let entry = CronEntry {
            name,
            schedule,
            zone,
            template,
        };
        if entry.next_after(now).is_none() {
            return Err(format!("schedule {pattern:?} never fires"));
        }
        Ok(entry)
    }

    /// The first tick strictly after `now`; `None` when the schedule never fires again.
    pub(crate) fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.zone {
            None => self.schedule.find_next_occurrence(&now, false).ok(),
            Some(tz) => self
                .schedule
                .find_next_occurrence(&now.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    fn tick_job(&self, tick: DateTime<Utc>) -> NewJob {
        NewJob {
            run_at: tick,
            unique_key: Some(tick_key(&self.name, tick)),
            unique_states: Default::default(),
            unique_for_ms: None,
            ..self.template.clone()
        }
    }
}

/// The tag every cron tick's job carries (and `cron:<name>`).
pub(crate) const CRON_TAG: &str = "cron";

/// A schedule's time zone prefix (`TZ=Europe/Berlin ` or `CRON_TZ=…`, as cronie and
/// Kubernetes write it), if any, and the fields after it.
fn split_zone(pattern: &str) -> Result<(Option<Tz>, &str), String> {
    let pattern = pattern.trim();
    let Some(rest) = pattern
        .strip_prefix("TZ=")
        .or_else(|| pattern.strip_prefix("CRON_TZ="))
    else {
        return Ok((None, pattern));
    };
    let (zone, fields) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let tz = zone.parse::<Tz>().map_err(|_| {
        format!(
            "schedule {pattern:?} names the time zone {zone:?}, which is not an IANA time zone: \
             use a name such as Europe/Berlin, America/New_York or UTC"
        )
    })?;
    Ok((Some(tz), fields.trim_start()))
}

/// The unique key of `name`'s job for `tick`.
pub(crate) fn tick_key(name: &str, tick: DateTime<Utc>) -> String {
    format!(
        "cron:{name}:{}",
        tick.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

pub(crate) struct Cron {
    store: Arc<dyn Store>,
    entries: Arc<[CronEntry]>,
    /// Wait before retrying a failed pass.
    retry: Duration,
    /// The tick each entry last enqueued: a pass woken before that tick passes writes nothing.
    enqueued: Mutex<Vec<Option<DateTime<Utc>>>>,
    clock: Clock,
}

impl Cron {
    /// Reads the time from `clock` (the worker's).
    pub(crate) fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub(crate) fn new(store: Arc<dyn Store>, entries: Arc<[CronEntry]>, retry: Duration) -> Self {
        let enqueued = Mutex::new(vec![None; entries.len()]);
        Cron {
            clock: Clock::default(),
            store,
            entries,
            retry,
            enqueued,
        }
    }

    /// Enqueues every entry's next tick after `now` not enqueued yet; returns the time until
    /// the earliest of them.
    async fn pass(&self, now: DateTime<Utc>) -> Result<Duration, StoreError> {
        let mut wait = MAX_WAIT;
        let mut due = Vec::new();
        {
            let enqueued = self.enqueued.lock().expect("cron state");
            for (i, entry) in self.entries.iter().enumerate() {
                let Some(tick) = entry.next_after(now) else {
                    continue;
                };
                wait = wait.min((tick - now).to_std().unwrap_or_default());
                if enqueued[i] != Some(tick) {
                    due.push((i, tick));
                }
            }
        }
        if due.is_empty() {
            return Ok(wait);
        }
        let jobs: Vec<NewJob> = due
            .iter()
            .map(|&(i, tick)| self.entries[i].tick_job(tick))
            .collect();
        let labels = labels(&jobs);
        let res = self.store.insert(jobs, now).await?;
        let res = count_enqueued(&labels, res);
        let mut enqueued = self.enqueued.lock().expect("cron state");
        for (&(i, tick), r) in due.iter().zip(res) {
            enqueued[i] = Some(tick);
            tracing::debug!(cron = %self.entries[i].name, %tick, job_id = r.id, inserted = r.inserted,
                "cron tick enqueued");
        }
        Ok(wait)
    }
}

#[async_trait]
impl Service for Cron {
    fn name(&self) -> &'static str {
        "cron"
    }

    fn interval(&self) -> Duration {
        self.retry
    }

    /// A tick due within the first interval is enqueued before its time.
    fn starts_at_once(&self) -> bool {
        true
    }

    async fn run_once(&self) -> Result<Option<Duration>, StoreError> {
        // Wake just after the tick, so the next pass looks past it.
        let now = self.clock.now(&*self.store).await;
        let wait = self.pass(now).await?;
        Ok(Some(wait + Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use errand_core::{ClaimRequest, Finish, FinishAction, JobState, ListFilter};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// An entry named after its pattern, enqueueing an empty job on queue "q".
    fn entry(pattern: &str) -> Result<CronEntry, String> {
        let job = NewJob {
            kind: "k".into(),
            queue: "q".into(),
            args: "{}".into(),
            priority: 0,
            max_attempts: 1,
            run_at: Utc::now(),
            tags: vec![],
            unique_key: None,
            unique_states: Default::default(),
            unique_for_ms: None,
            backoff: None,
            timeout_ms: None,
            partition_key: None,
        };
        CronEntry::new(pattern.to_owned(), pattern, job, Utc::now())
    }

    fn service(store: &MemoryStore, patterns: &[&str]) -> Cron {
        let entries: Vec<CronEntry> = patterns.iter().map(|p| entry(p).unwrap()).collect();
        Cron::new(
            Arc::new(store.clone()),
            entries.into(),
            Duration::from_secs(1),
        )
    }

    async fn jobs(store: &MemoryStore) -> Vec<errand_core::JobRow> {
        let mut rows = store.list(&ListFilter::new()).await.unwrap();
        rows.sort_by_key(|r| r.id);
        rows
    }

    #[test]
    fn schedules_parse_with_or_without_seconds() {
        let now = at("2030-01-01T10:00:30.5Z");
        let minutely = entry("* * * * *").unwrap();
        assert_eq!(minutely.next_after(now), Some(at("2030-01-01T10:01:00Z")));
        let secondly = entry("* * * * * *").unwrap();
        assert_eq!(secondly.next_after(now), Some(at("2030-01-01T10:00:31Z")));
        let hourly = entry("@hourly").unwrap();
        assert_eq!(hourly.next_after(now), Some(at("2030-01-01T11:00:00Z")));
        // Strictly after: a pass at the tick itself looks at the next one.
        let tick = at("2030-01-01T10:01:00Z");
        assert_eq!(minutely.next_after(tick), Some(at("2030-01-01T10:02:00Z")));
        assert_eq!(tick_key("report", tick), "cron:report:2030-01-01T10:01:00Z");
    }

    /// Each tick after `from`, in turn, `n` of them.
    fn ticks(pattern: &str, from: &str, n: usize) -> Vec<DateTime<Utc>> {
        let e = entry(pattern).unwrap();
        let mut t = at(from);
        (0..n)
            .map(|_| {
                t = e.next_after(t).unwrap();
                t
            })
            .collect()
    }

    #[test]
    fn a_zone_reads_the_schedule_in_local_time() {
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(
            ticks("TZ=Europe/Berlin 0 9 * * *", "2026-01-10T00:00:00Z", 1),
            [at("2026-01-10T08:00:00Z")]
        );
        assert_eq!(
            ticks("CRON_TZ=Europe/Berlin 0 9 * * *", "2026-07-10T00:00:00Z", 1),
            [at("2026-07-10T07:00:00Z")]
        );
        assert_eq!(
            ticks("TZ=UTC 0 9 * * *", "2026-07-10T00:00:00Z", 1),
            [at("2026-07-10T09:00:00Z")]
        );
    }

    /// Spring forward (Berlin, 2026-03-29: 02:00 CET → 03:00 CEST): 02:30 does not exist
    /// that day; it runs at the first instant after the jump, 03:00 CEST (01:00 UTC), once,
    /// and at 02:30 CEST the day after.
    #[test]
    fn a_skipped_local_time_runs_right_after_the_jump() {
        assert_eq!(
            ticks("TZ=Europe/Berlin 30 2 * * *", "2026-03-28T12:00:00Z", 3),
            [
                at("2026-03-29T01:00:00Z"),
                at("2026-03-30T00:30:00Z"),
                at("2026-03-31T00:30:00Z"),
            ]
        );
    }

    /// Fall back (Berlin, 2026-10-25: 03:00 CEST → 02:00 CET): 02:30 happens twice; a
    /// fixed time runs once, at the first (00:30 UTC), never again at the second (01:30
    /// UTC); the next run is the day after.
    #[test]
    fn a_repeated_local_time_runs_once() {
        assert_eq!(
            ticks("TZ=Europe/Berlin 30 2 * * *", "2026-10-24T12:00:00Z", 2),
            [at("2026-10-25T00:30:00Z"), at("2026-10-26T01:30:00Z")]
        );
        // A search starting between the two 02:30s finds the next day's.
        assert_eq!(
            ticks("TZ=Europe/Berlin 30 2 * * *", "2026-10-25T00:30:00Z", 1),
            [at("2026-10-26T01:30:00Z")]
        );
    }

    /// An interval schedule runs through both repeated hours, every 30 minutes of real time.
    #[test]
    fn an_interval_schedule_keeps_its_pace_through_the_repeated_hour() {
        assert_eq!(
            ticks("TZ=Europe/Berlin */30 * * * *", "2026-10-24T23:45:00Z", 5),
            [
                at("2026-10-25T00:00:00Z"),
                at("2026-10-25T00:30:00Z"),
                at("2026-10-25T01:00:00Z"),
                at("2026-10-25T01:30:00Z"),
                at("2026-10-25T02:00:00Z"),
            ]
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (pattern, says) in [
            ("every minute", "not a cron expression"),
            ("* * * *", "not a cron expression"),
            ("61 * * * *", "not a cron expression"),
            ("* * * * * * *", "not a cron expression"),
            ("0 0 30 2 *", "never fires"),
            ("TZ=Europe/Atlantis 0 9 * * *", "not an IANA time zone"),
            ("TZ=Europe/Berlin", "not a cron expression"),
        ] {
            let err = entry(pattern).unwrap_err();
            assert!(err.contains(says), "{pattern}: {err}");
        }
    }

    #[tokio::test]
    async fn the_next_tick_is_enqueued_ahead_as_scheduled() {
        let store = MemoryStore::new();
        let svc = service(&store, &["* * * * *"]);
        let wait = svc.pass(at("2030-01-01T10:00:30Z")).await.unwrap();
        assert_eq!(wait, Duration::from_secs(30));
        let rows = jobs(&store).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].state, JobState::Scheduled);
        assert_eq!(rows[0].run_at, at("2030-01-01T10:01:00Z"));
        assert_eq!(
            rows[0].unique_key.as_deref(),
            Some("cron:* * * * *:2030-01-01T10:01:00Z")
        );
        // Once that tick passes, the following one.
        svc.pass(at("2030-01-01T10:01:00.001Z")).await.unwrap();
        let rows = jobs(&store).await;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].run_at, at("2030-01-01T10:02:00Z"));
    }

    #[tokio::test]
    async fn the_first_pass_runs_at_start() {
        let store = MemoryStore::new();
        let entries: Vec<CronEntry> = vec![entry("@hourly").unwrap()];
        // A retry interval of an hour: only a pass at start enqueues within the test.
        let svc = Cron::new(
            Arc::new(store.clone()),
            entries.into(),
            Duration::from_secs(3600),
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = super::super::spawn(svc, super::super::Control::new(stop_rx));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while jobs(&store).await.is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "no pass at start");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn many_workers_enqueue_one_job_per_tick() {
        let store = MemoryStore::new();
        let a = service(&store, &["* * * * *", "*/5 * * * * *"]);
        let b = service(&store, &["* * * * *", "*/5 * * * * *"]);
        a.pass(at("2030-01-01T10:00:30Z")).await.unwrap();
        b.pass(at("2030-01-01T10:00:31Z")).await.unwrap();
        a.pass(at("2030-01-01T10:00:32Z")).await.unwrap();
        let keys: Vec<String> = jobs(&store)
            .await
            .into_iter()
            .map(|r| r.unique_key.unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "cron:* * * * *:2030-01-01T10:01:00Z",
                "cron:*/5 * * * * *:2030-01-01T10:00:35Z",
            ]
        );
    }

    #[tokio::test]
    async fn a_tick_that_ran_is_not_enqueued_again_by_an_early_wake() {
        let store = MemoryStore::new();
        let svc = service(&store, &["* * * * * *"]);
        svc.pass(at("2030-01-01T10:00:00.2Z")).await.unwrap();
        // The tick runs and completes (its row is final, so the unique index no longer
        // holds its key) ...
        let tick = at("2030-01-01T10:00:01Z");
        store.promote_due(tick, 10).await.unwrap();
        let claimed = store
            .claim(&ClaimRequest {
                queue: "q".into(),
                limit: 10,
                worker_id: "w".into(),
                now: tick,
                lease: Duration::from_secs(30),
                held: None,
            })
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        store
            .finish(&[Finish {
                lease: claimed[0].lease_ref(),
                at: tick,
                action: FinishAction::Complete,
            }])
            .await
            .unwrap();
        // ... and a pass woken just before the tick (timers, jitter) must not write it again.
        svc.pass(at("2030-01-01T10:00:00.999Z")).await.unwrap();
        let rows = jobs(&store).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].state, JobState::Completed);
    }
}
