//! [`JobOptions`]: how a job runs, said per type, per call and per worker; resolved and
//! validated into the row the store writes.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use errand_core::{
    check_name, check_partition_key, Backoff, NewJob, UniqueStates, MAX_KIND_LEN, MAX_QUEUE_LEN,
    MAX_TAGS, MAX_TAG_LEN,
};

use crate::{EnqueueError, Unique};

/// The queue jobs go to when nothing says otherwise.
pub const DEFAULT_QUEUE: &str = "default";
/// Attempts allowed when nothing says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 20;
/// The most attempts a job may be given.
pub const MAX_ATTEMPTS_LIMIT: i32 = 10_000;

/// How a job runs: its queue, priority, attempts, backoff, timeout, run time, unique key and
/// tags. One type for every place that says so:
///
/// - per job type, returned by [`Job::options`](crate::Job::options);
/// - per enqueue call, [`Client::enqueue_with`](crate::Client::enqueue_with) (and the batch,
///   transaction and cron variants);
/// - per worker, [`WorkerBuilder::job_defaults`](crate::WorkerBuilder::job_defaults), for the
///   two settings a worker applies when it runs a job: `timeout` and `backoff`.
///
/// **Resolution**: each setting is resolved on its own, and the first place that sets it wins:
/// the enqueue call, then the job type's `Job::options` (its queue falling back to
/// [`Job::QUEUE`](crate::Job::QUEUE)), then — for `timeout` and `backoff` only, when the job
/// runs — the running worker's `job_defaults`, then errand's default (queue `"default"`,
/// priority 0, 20 attempts, [`Backoff::default`], no timeout, run now, no unique key). Tags
/// add up: the type's, then the call's. Everything but `timeout` and `backoff` is fixed when
/// the job is enqueued; those two, when left unset, follow whichever worker runs the job.
///
/// ```
/// use std::time::Duration;
/// use errand::{Backoff, JobOptions};
/// // Per type:
/// let per_type = JobOptions::new()
///     .queue("mail")
///     .max_attempts(5)
///     .backoff(Backoff::exponential(Duration::from_secs(2), Duration::from_secs(600)))
///     .timeout(Duration::from_secs(30));
/// // Per call: the same type, with a run time.
/// let per_call = JobOptions::new().delay(Duration::from_secs(60)).priority(1);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobOptions {
    queue: Option<String>,
    priority: Option<i16>,
    max_attempts: Option<i32>,
    backoff: Option<Backoff>,
    timeout: Option<Duration>,
    when: Option<When>,
    unique: Option<Unique>,
    partition_key: Option<String>,
    tags: Vec<String>,
}

/// When a job may first run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum When {
    At(DateTime<Utc>),
    After(TimeDelta),
}

impl JobOptions {
    /// Nothing set: every setting falls through to the next place (see the resolution rule).
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue to run on (default [`Job::QUEUE`](crate::Job::QUEUE), itself `"default"`
    /// unless the type says otherwise; 1–128 bytes, no control characters).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Lower runs first; 0 (the default) is the highest usual priority.
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Attempts before the job is discarded (default 20; 1–10,000).
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Delay policy between attempts (default: [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Longest a run may take before it is stopped and counted as a failure (default: none).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Run no earlier than `at` (a time in the past means now). Replaces a
    /// [`delay`](Self::delay).
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.when = Some(When::At(at));
        self
    }

    /// Run no earlier than `delay` from enqueue (measured on the store's clock). Replaces a
    /// [`run_at`](Self::run_at).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.when = Some(When::After(
            TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX),
        ));
        self
    }

    /// Like [`delay`](Self::delay) with a signed `chrono` delta; a negative delta is rejected
    /// at enqueue.
    pub fn delay_by(mut self, delay: TimeDelta) -> Self {
        self.when = Some(When::After(delay));
        self
    }

    /// At most one non-final job holds `key`; enqueueing another returns the existing one.
    /// Short for `.unique(Unique::key(key))`.
    pub fn unique_key(self, key: impl Into<String>) -> Self {
        self.unique(Unique::key(key))
    }

    /// When this job is a duplicate of one already stored (by key or by arguments, per
    /// queue, in which states, for how long after it finished): see [`Unique`].
    pub fn unique(mut self, unique: Unique) -> Self {
        self.unique = Some(unique);
        self
    }

    /// The job's partition key: when its queue has a per-key limit
    /// ([`QueueLimits::max_per_key`](crate::QueueLimits)), at most that many jobs with the
    /// same key run at once across every worker, and keys take turns (one customer's backlog
    /// does not hold up the others). Derive it from the arguments in [`Job::options`]
    /// (`.partition_key(format!("customer:{}", self.customer_id))`) or set it per call.
    /// 1–256 bytes, no control characters.
    ///
    /// [`Job::options`]: crate::Job::options
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Adds a label for operators (filter with `errand jobs list --tag`).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// These options with each unset setting taken from `lower` (tags: `lower`'s first).
    pub(crate) fn over(self, lower: JobOptions) -> JobOptions {
        let mut tags = lower.tags;
        tags.extend(self.tags);
        JobOptions {
            queue: self.queue.or(lower.queue),
            priority: self.priority.or(lower.priority),
            max_attempts: self.max_attempts.or(lower.max_attempts),
            backoff: self.backoff.or(lower.backoff),
            timeout: self.timeout.or(lower.timeout),
            when: self.when.or(lower.when),
            unique: self.unique.or(lower.unique),
            partition_key: self.partition_key.or(lower.partition_key),
            tags,
        }
    }

    /// The first setting a cron entry cannot take (it sets each tick's run time and key).
    pub(crate) fn cron_conflict(&self) -> Option<&'static str> {
        [
            ("a run time (`run_at` or `delay`)", self.when.is_some()),
            (
                "a unique key (`unique_key` or `unique`)",
                self.unique.is_some(),
            ),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name))
    }

    /// The first setting a worker cannot apply at run time (all but timeout and backoff are
    /// fixed at enqueue).
    pub(crate) fn enqueue_only_setting(&self) -> Option<&'static str> {
        [
            ("queue", self.queue.is_some()),
            ("priority", self.priority.is_some()),
            ("max_attempts", self.max_attempts.is_some()),
            ("run_at` or `delay", self.when.is_some()),
            ("unique", self.unique.is_some()),
            ("partition_key", self.partition_key.is_some()),
            ("tag", !self.tags.is_empty()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name))
    }

    /// The timeout set here, if any.
    pub(crate) fn timeout_setting(&self) -> Option<Duration> {
        self.timeout
    }

    /// The backoff set here, if any.
    pub(crate) fn backoff_setting(&self) -> Option<Backoff> {
        self.backoff
    }
}

fn invalid(option: &'static str, reason: impl Into<String>) -> EnqueueError {
    EnqueueError::InvalidOption {
        option,
        reason: reason.into(),
    }
}

/// Layers the call's options over the type's (see [`JobOptions`]'s resolution rule) and
/// validates the result; run times are measured from `now`.
pub(crate) fn resolve(
    kind: &'static str,
    args: String,
    per_type: JobOptions,
    call: JobOptions,
    now: DateTime<Utc>,
) -> Result<NewJob, EnqueueError> {
    check_name("kind", kind, MAX_KIND_LEN).map_err(|r| invalid("kind", r))?;
    let o = call.over(per_type);
    let queue = o.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_owned());
    check_name("queue", &queue, MAX_QUEUE_LEN).map_err(|r| invalid("queue", r))?;
    let max_attempts = o.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
        return Err(invalid(
            "max_attempts",
            format!("{max_attempts} is out of range: use 1 to {MAX_ATTEMPTS_LIMIT}"),
        ));
    }
    let run_at = match o.when {
        Some(When::At(at)) => at,
        Some(When::After(d)) if d < TimeDelta::zero() => {
            return Err(invalid(
                "delay",
                format!("{d} is negative: use a delay of zero or more"),
            ))
        }
        Some(When::After(d)) => now
            .checked_add_signed(d)
            .ok_or_else(|| invalid("delay", format!("{d} puts the run time past year 262143")))?,
        None => now,
    };
    let timeout = o.timeout;
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(invalid("timeout", "zero: use a positive duration, or none"));
    }
    let (unique_key, unique_states, unique_for_ms) = match o.unique {
        Some(u) => {
            let (key, states, period) = crate::unique::resolve(u, kind, &queue, &args)?;
            (Some(key), states, period)
        }
        None => (None, UniqueStates::NOT_FINAL, None),
    };
    let tags = o.tags;
    if tags.len() > MAX_TAGS {
        return Err(invalid(
            "tags",
            format!("{} tags, over the limit of {MAX_TAGS}", tags.len()),
        ));
    }
    if let Some(t) = tags.iter().find(|t| t.contains('\0')) {
        return Err(invalid(
            "tags",
            format!("tag {t:?} contains a NUL character"),
        ));
    }
    if let Some(t) = tags.iter().find(|t| t.len() > MAX_TAG_LEN) {
        return Err(invalid(
            "tags",
            format!(
                "a tag of {} bytes, over the {MAX_TAG_LEN}-byte limit",
                t.len()
            ),
        ));
    }
    let backoff = o.backoff;
    if let Some(Err(reason)) = backoff.as_ref().map(Backoff::check) {
        return Err(invalid("backoff", reason));
    }
    if let Some(key) = &o.partition_key {
        check_partition_key(key).map_err(|r| invalid("partition_key", r))?;
    }
    Ok(NewJob {
        kind: kind.to_owned(),
        queue,
        args,
        priority: o.priority.unwrap_or(0),
        max_attempts,
        run_at,
        tags,
        unique_key,
        unique_states,
        unique_for_ms,
        backoff,
        timeout_ms: timeout.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
        partition_key: o.partition_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap()
    }

    fn try_resolve(call: JobOptions) -> Result<NewJob, EnqueueError> {
        resolve("k", "{}".into(), JobOptions::new(), call, now())
    }

    fn rejected(call: JobOptions, option: &str) -> String {
        match try_resolve(call) {
            Err(EnqueueError::InvalidOption { option: o, reason }) => {
                assert_eq!(o, option);
                reason
            }
            other => panic!("expected InvalidOption({option}), got {other:?}"),
        }
    }

    #[test]
    fn call_overrides_type_defaults() {
        let defaults = JobOptions::new().queue("mail").priority(3).tag("t1");
        let job = resolve(
            "k",
            "{}".into(),
            defaults,
            JobOptions::new()
                .priority(1)
                .tag("t2")
                .delay(Duration::from_secs(60)),
            now(),
        )
        .unwrap();
        assert_eq!(job.queue, "mail");
        assert_eq!(job.priority, 1);
        assert_eq!(job.tags, ["t1", "t2"]);
        assert_eq!(job.run_at, now() + TimeDelta::seconds(60));
        assert_eq!(job.max_attempts, DEFAULT_MAX_ATTEMPTS);
    }

    #[test]
    fn each_setting_falls_through_on_its_own() {
        let at = now() + TimeDelta::hours(2);
        let per_type = JobOptions::new()
            .delay(Duration::from_secs(30))
            .max_attempts(3)
            .timeout(Duration::from_secs(9));
        let typed = resolve("k", "{}".into(), per_type.clone(), JobOptions::new(), now()).unwrap();
        assert_eq!(typed.run_at, now() + TimeDelta::seconds(30));
        assert_eq!((typed.queue.as_str(), typed.priority), (DEFAULT_QUEUE, 0));
        assert_eq!(typed.timeout_ms, Some(9000));
        // A call's run time replaces the type's delay; its other unset settings fall through.
        let call = JobOptions::new().run_at(at).priority(-1);
        let job = resolve("k", "{}".into(), per_type, call, now()).unwrap();
        assert_eq!((job.run_at, job.priority, job.max_attempts), (at, -1, 3));
        // Unset timeout and backoff stay unset: the running worker's defaults apply.
        let bare = resolve(
            "k",
            "{}".into(),
            JobOptions::new(),
            JobOptions::new(),
            now(),
        )
        .unwrap();
        assert_eq!((bare.timeout_ms, bare.backoff), (None, None));
    }

    #[test]
    fn zero_and_too_many_attempts_are_rejected() {
        assert!(rejected(JobOptions::new().max_attempts(0), "max_attempts").contains("1 to"));
        rejected(JobOptions::new().max_attempts(10_001), "max_attempts");
        rejected(JobOptions::new().max_attempts(-1), "max_attempts");
    }

    #[test]
    fn bad_queue_names_are_rejected() {
        assert!(rejected(JobOptions::new().queue(""), "queue").contains("empty"));
        assert!(rejected(JobOptions::new().queue("q".repeat(129)), "queue").contains("129"));
        rejected(JobOptions::new().queue("a\nb"), "queue");
        // Quotes, semicolons and unicode are fine: names are bound as parameters.
        try_resolve(JobOptions::new().queue("it's; ünïcode 队列")).unwrap();
        try_resolve(JobOptions::new().queue("q".repeat(128))).unwrap();
    }

    #[test]
    fn bad_partition_keys_are_rejected_and_the_call_wins() {
        let key = |k: &str| JobOptions::new().partition_key(k);
        assert!(rejected(key(""), "partition_key").contains("empty"));
        assert!(rejected(key(&"k".repeat(257)), "partition_key").contains("257"));
        assert!(rejected(key("a\0b"), "partition_key").contains("control"));
        rejected(key("a\nb"), "partition_key");
        try_resolve(key(&"k".repeat(256))).unwrap();
        let job = resolve("k", "{}".into(), key("type"), key("call"), now()).unwrap();
        assert_eq!(job.partition_key.as_deref(), Some("call"));
        let job = resolve("k", "{}".into(), key("type"), JobOptions::new(), now()).unwrap();
        assert_eq!(job.partition_key.as_deref(), Some("type"));
    }

    #[test]
    fn nul_in_unique_keys_and_tags_is_rejected() {
        assert!(rejected(JobOptions::new().unique_key("a\0b"), "unique").contains("NUL"));
        assert!(rejected(JobOptions::new().tag("ok").tag("x\0"), "tags").contains("NUL"));
        try_resolve(JobOptions::new().unique_key("ünï\tcode").tag("a b")).unwrap();
    }

    #[test]
    fn values_that_cannot_round_trip_are_rejected() {
        let nan = Backoff::Constant {
            delay_ms: 1000,
            jitter: f64::NAN,
        };
        assert!(rejected(JobOptions::new().backoff(nan), "backoff").contains("jitter NaN"));
        let r = rejected(JobOptions::new().unique_key("k".repeat(1025)), "unique");
        assert!(r.contains("1025 bytes"), "{r}");
        try_resolve(JobOptions::new().unique_key("k".repeat(1024))).unwrap();
        let mut many = JobOptions::new();
        for i in 0..65 {
            many = many.tag(format!("t{i}"));
        }
        assert!(rejected(many, "tags").contains("65 tags"));
        rejected(JobOptions::new().tag("t".repeat(257)), "tags");
    }

    #[test]
    fn negative_delay_is_rejected() {
        let r = rejected(JobOptions::new().delay_by(TimeDelta::seconds(-5)), "delay");
        assert!(r.contains("negative"), "{r}");
    }

    #[test]
    fn past_run_at_is_accepted() {
        let job = try_resolve(JobOptions::new().run_at(now() - TimeDelta::days(400))).unwrap();
        assert!(job.run_at < now());
    }
}
