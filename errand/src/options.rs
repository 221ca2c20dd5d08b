//! Per-type defaults ([`JobOptions`]) and per-call overrides ([`EnqueueOptions`]), resolved
//! and validated into the row the store writes.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use errand_core::{
    Backoff, NewJob, MAX_KIND_LEN, MAX_QUEUE_LEN, MAX_TAGS, MAX_TAG_LEN, MAX_UNIQUE_KEY_LEN,
};

use crate::EnqueueError;

/// The queue jobs go to when nothing says otherwise.
pub const DEFAULT_QUEUE: &str = "default";
/// Attempts allowed when nothing says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 20;
/// The most attempts a job may be given.
pub const MAX_ATTEMPTS_LIMIT: i32 = 10_000;

/// Defaults for every job of one type, returned by [`crate::Job::options`].
///
/// ```
/// use std::time::Duration;
/// use errand::{Backoff, JobOptions};
/// let opts = JobOptions::default()
///     .queue("mail")
///     .priority(1)
///     .max_attempts(5)
///     .backoff(Backoff::exponential(Duration::from_secs(2), Duration::from_secs(600)))
///     .timeout(Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct JobOptions {
    pub(crate) queue: String,
    pub(crate) priority: i16,
    pub(crate) max_attempts: i32,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) unique_key: Option<String>,
    pub(crate) tags: Vec<String>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            queue: DEFAULT_QUEUE.to_owned(),
            priority: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: None,
            timeout: None,
            unique_key: None,
            tags: Vec::new(),
        }
    }
}

impl JobOptions {
    /// Queue to run on (default `"default"`; 1–128 bytes, no control characters).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Lower runs first; 0 (the default) is the highest usual priority.
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// Attempts before the job is discarded (default 20; 1–10,000).
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = n;
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

    /// At most one non-final job holds `key`; enqueueing another returns the existing one.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Adds a label for operators.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// Overrides for one enqueue; unset fields keep the job type's [`JobOptions`].
///
/// ```
/// use std::time::Duration;
/// use errand::EnqueueOptions;
/// let opts = EnqueueOptions::new().delay(Duration::from_secs(60)).priority(1);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnqueueOptions {
    queue: Option<String>,
    priority: Option<i16>,
    max_attempts: Option<i32>,
    backoff: Option<Backoff>,
    timeout: Option<Duration>,
    run_at: Option<DateTime<Utc>>,
    delay: Option<TimeDelta>,
    unique_key: Option<String>,
    tags: Vec<String>,
}

impl EnqueueOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first override a cron entry cannot take (it sets each tick's run time and key).
    pub(crate) fn cron_conflict(&self) -> Option<&'static str> {
        [
            ("run_at", self.run_at.is_some()),
            ("delay", self.delay.is_some()),
            ("unique_key", self.unique_key.is_some()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name))
    }

    /// Queue to run on.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Priority (lower runs first).
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Attempts before discarding (1–10,000).
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Backoff between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Run timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Run no earlier than `at` (a time in the past means now).
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self.delay = None;
        self
    }

    /// Run no earlier than `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX));
        self.run_at = None;
        self
    }

    /// Like [`delay`](Self::delay) with a signed `chrono` delta; a negative delta is rejected
    /// at enqueue.
    pub fn delay_by(mut self, delay: TimeDelta) -> Self {
        self.delay = Some(delay);
        self.run_at = None;
        self
    }

    /// Uniqueness key among non-final jobs.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Adds a label.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

fn invalid(option: &'static str, reason: impl Into<String>) -> EnqueueError {
    EnqueueError::InvalidOption {
        option,
        reason: reason.into(),
    }
}

/// Checks a queue or kind name: 1–`max` bytes, no control characters.
pub(crate) fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{what} name is empty"));
    }
    if name.len() > max {
        return Err(format!(
            "{what} name is {} bytes, over the {max}-byte limit",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} name {name:?} contains control characters"));
    }
    Ok(())
}

/// Merges type defaults with call overrides and validates the result.
pub(crate) fn resolve(
    kind: &'static str,
    args: String,
    defaults: JobOptions,
    call: EnqueueOptions,
    now: DateTime<Utc>,
) -> Result<NewJob, EnqueueError> {
    check_name("kind", kind, MAX_KIND_LEN).map_err(|r| invalid("kind", r))?;
    let queue = call.queue.unwrap_or(defaults.queue);
    check_name("queue", &queue, MAX_QUEUE_LEN).map_err(|r| invalid("queue", r))?;
    let max_attempts = call.max_attempts.unwrap_or(defaults.max_attempts);
    if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
        return Err(invalid(
            "max_attempts",
            format!("{max_attempts} is out of range: use 1 to {MAX_ATTEMPTS_LIMIT}"),
        ));
    }
    let run_at = match (call.run_at, call.delay) {
        (Some(at), _) => at,
        (None, Some(d)) if d < TimeDelta::zero() => {
            return Err(invalid(
                "delay",
                format!("{d} is negative: use a delay of zero or more"),
            ))
        }
        (None, Some(d)) => now
            .checked_add_signed(d)
            .ok_or_else(|| invalid("delay", format!("{d} puts the run time past year 262143")))?,
        (None, None) => now,
    };
    let timeout = call.timeout.or(defaults.timeout);
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(invalid("timeout", "zero: use a positive duration, or none"));
    }
    let unique_key = call.unique_key.or(defaults.unique_key);
    if unique_key.as_deref().is_some_and(str::is_empty) {
        return Err(invalid("unique_key", "empty: use a non-empty key, or none"));
    }
    // PostgreSQL cannot store U+0000 in text or JSON; refuse it on every store alike.
    if unique_key.as_deref().is_some_and(|k| k.contains('\0')) {
        return Err(invalid("unique_key", "contains a NUL character"));
    }
    if let Some(k) = unique_key
        .as_deref()
        .filter(|k| k.len() > MAX_UNIQUE_KEY_LEN)
    {
        return Err(invalid(
            "unique_key",
            format!(
                "{} bytes, over the {MAX_UNIQUE_KEY_LEN}-byte limit: use a hash of the value",
                k.len()
            ),
        ));
    }
    let mut tags = defaults.tags;
    tags.extend(call.tags);
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
    let backoff = call.backoff.or(defaults.backoff);
    if let Some(Err(reason)) = backoff.as_ref().map(Backoff::check) {
        return Err(invalid("backoff", reason));
    }
    Ok(NewJob {
        kind: kind.to_owned(),
        queue,
        args,
        priority: call.priority.unwrap_or(defaults.priority),
        max_attempts,
        run_at,
        tags,
        unique_key,
        backoff,
        timeout_ms: timeout.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap()
    }

    fn try_resolve(call: EnqueueOptions) -> Result<NewJob, EnqueueError> {
        resolve("k", "{}".into(), JobOptions::default(), call, now())
    }

    fn rejected(call: EnqueueOptions, option: &str) -> String {
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
        let defaults = JobOptions::default().queue("mail").priority(3).tag("t1");
        let job = resolve(
            "k",
            "{}".into(),
            defaults,
            EnqueueOptions::new()
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
    fn zero_and_too_many_attempts_are_rejected() {
        assert!(rejected(EnqueueOptions::new().max_attempts(0), "max_attempts").contains("1 to"));
        rejected(EnqueueOptions::new().max_attempts(10_001), "max_attempts");
        rejected(EnqueueOptions::new().max_attempts(-1), "max_attempts");
    }

    #[test]
    fn bad_queue_names_are_rejected() {
        assert!(rejected(EnqueueOptions::new().queue(""), "queue").contains("empty"));
        assert!(rejected(EnqueueOptions::new().queue("q".repeat(129)), "queue").contains("129"));
        rejected(EnqueueOptions::new().queue("a\nb"), "queue");
        // Quotes, semicolons and unicode are fine: names are bound as parameters.
        try_resolve(EnqueueOptions::new().queue("it's; ünïcode 队列")).unwrap();
        try_resolve(EnqueueOptions::new().queue("q".repeat(128))).unwrap();
    }

    #[test]
    fn nul_in_unique_keys_and_tags_is_rejected() {
        assert!(rejected(EnqueueOptions::new().unique_key("a\0b"), "unique_key").contains("NUL"));
        assert!(rejected(EnqueueOptions::new().tag("ok").tag("x\0"), "tags").contains("NUL"));
        try_resolve(EnqueueOptions::new().unique_key("ünï\tcode").tag("a b")).unwrap();
    }

    #[test]
    fn values_that_cannot_round_trip_are_rejected() {
        let nan = Backoff::Constant {
            delay_ms: 1000,
            jitter: f64::NAN,
        };
        assert!(rejected(EnqueueOptions::new().backoff(nan), "backoff").contains("jitter NaN"));
        let r = rejected(
            EnqueueOptions::new().unique_key("k".repeat(1025)),
            "unique_key",
        );
        assert!(r.contains("1025 bytes"), "{r}");
        try_resolve(EnqueueOptions::new().unique_key("k".repeat(1024))).unwrap();
        let mut many = EnqueueOptions::new();
        for i in 0..65 {
            many = many.tag(format!("t{i}"));
        }
        assert!(rejected(many, "tags").contains("65 tags"));
        rejected(EnqueueOptions::new().tag("t".repeat(257)), "tags");
    }

    #[test]
    fn negative_delay_is_rejected() {
        let r = rejected(
            EnqueueOptions::new().delay_by(TimeDelta::seconds(-5)),
            "delay",
        );
        assert!(r.contains("negative"), "{r}");
    }

    #[test]
    fn past_run_at_is_accepted() {
        let job = try_resolve(EnqueueOptions::new().run_at(now() - TimeDelta::days(400))).unwrap();
        assert!(job.run_at < now());
    }
}
