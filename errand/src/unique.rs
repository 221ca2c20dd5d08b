//! [`Unique`]: when a job is a duplicate of one already stored, resolved at enqueue into the
//! row's key, holding states and period; the store's unique index does the rest, race-free.

use std::time::Duration;

use errand_core::{JobState, UniqueStates, MAX_UNIQUE_KEY_LEN};
use sha2::{Digest, Sha256};

use crate::EnqueueError;

/// When an enqueued job is a duplicate: it is not written, and the enqueue returns the id of
/// the job that holds its key (`Enqueued { inserted: false, .. }`). Set per type in
/// [`Job::options`](crate::Job::options) or per call, with [`JobOptions::unique`](crate::JobOptions::unique).
///
/// - **What is compared**: an explicit key ([`Unique::key`], shared across job types), or the
///   job itself ([`Unique::by_args`]: its kind and its arguments as canonical JSON — object
///   keys sorted — hashed with SHA-256, so two jobs with the same fields in any order are the
///   same).
/// - **Where**: across every queue, or within one ([`Unique::per_queue`]).
/// - **When a job holds its key**: in every state that is not final (scheduled, available,
///   running, retryable: one job at a time), and also in the final states you add with
///   [`Unique::states`] — for [`Unique::period`] only until the period has passed since it
///   finished.
///
/// The store's unique index over the rows that hold a key decides, in the insert itself:
/// sixteen tasks enqueueing the same job at once write one row, on every store.
///
/// ```
/// use std::time::Duration;
/// use errand::{JobOptions, JobState, Unique};
/// // One sync per account at a time (the default: until it ends).
/// let one_at_a_time = JobOptions::new().unique(Unique::key("sync:42"));
/// // The same report at most once an hour, whatever its arguments' field order.
/// let hourly = JobOptions::new().unique(Unique::by_args().period(Duration::from_secs(3600)));
/// // Never twice the same import, even after it failed for good, within one queue.
/// let once = JobOptions::new().unique(
///     Unique::by_args().per_queue().states([JobState::Completed, JobState::Discarded]),
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Unique {
    by: By,
    per_queue: bool,
    states: Option<Vec<JobState>>,
    period: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
enum By {
    Key(String),
    Args,
}

impl Unique {
    /// Jobs with this key are duplicates (of any kind).
    pub fn key(key: impl Into<String>) -> Self {
        Unique {
            by: By::Key(key.into()),
            per_queue: false,
            states: None,
            period: None,
        }
    }

    /// Jobs of the same kind with the same arguments are duplicates (compared as canonical
    /// JSON: field order does not matter).
    pub fn by_args() -> Self {
        Unique {
            by: By::Args,
            per_queue: false,
            states: None,
            period: None,
        }
    }

    /// Only jobs on the same queue are duplicates.
    pub fn per_queue(mut self) -> Self {
        self.per_queue = true;
        self
    }

    /// The final states in which a job also holds its key (the states that are not final
    /// always do): `[JobState::Completed]` refuses a job whose twin already ran. Without
    /// this, none — or, with a [`period`](Self::period), `completed`.
    pub fn states(mut self, states: impl IntoIterator<Item = JobState>) -> Self {
        self.states = Some(states.into_iter().collect());
        self
    }

    /// A finished job holds its key for this long after it finished (in the final states
    /// that hold: `completed` unless [`states`](Self::states) says otherwise), then lets
    /// it go: "at most once per period".
    pub fn period(mut self, period: Duration) -> Self {
        self.period = Some(period);
        self
    }
}

fn invalid(reason: impl Into<String>) -> EnqueueError {
    EnqueueError::InvalidOption {
        option: "unique",
        reason: reason.into(),
    }
}

/// A unique setting resolved for one job: (key, holding states, period in ms).
pub(crate) fn resolve(
    unique: Unique,
    kind: &str,
    queue: &str,
    args: &str,
) -> Result<(String, UniqueStates, Option<i64>), EnqueueError> {
    let scope = |key: String| {
        if unique.per_queue {
            // Length-prefixed, so no queue and key can spell another pair's scope.
            format!("{}:{queue}:{key}", queue.len())
        } else {
            key
        }
    };
    let key = match &unique.by {
        By::Key(k) => {
            if k.is_empty() {
                return Err(invalid("empty key: use a non-empty key, or none"));
            }
            // PostgreSQL cannot store U+0000 in text; refuse it on every store alike.
            if k.contains('\0') {
                return Err(invalid("the key contains a NUL character"));
            }
            scope(k.clone())
        }
        By::Args => scope(format!("{kind}:{}", args_digest(kind, args)?)),
    };
    if key.len() > MAX_UNIQUE_KEY_LEN {
        return Err(invalid(format!(
            "a key of {} bytes, over the {MAX_UNIQUE_KEY_LEN}-byte limit: use a hash of the value",
            key.len()
        )));
    }
    let finals: Vec<JobState> = match (&unique.states, unique.period) {
        (Some(states), _) => states.iter().copied().filter(|s| s.is_final()).collect(),
        (None, Some(_)) => vec![JobState::Completed],
        (None, None) => Vec::new(),
    };
    let period_ms = match unique.period {
        None => None,
        Some(_) if finals.is_empty() => {
            return Err(invalid(
                "a period with no final state that holds the key does nothing: add one with \
                 Unique::states (e.g. [JobState::Completed]), or drop the period",
            ))
        }
        Some(p) if p.is_zero() => return Err(invalid("a period of zero: use a positive one")),
        Some(p) if p > errand_core::MAX_DELAY => {
            return Err(invalid(format!(
                "a period of {p:?} is out of range: use at most {:?} (100 years)",
                errand_core::MAX_DELAY
            )))
        }
        Some(p) => Some(p.as_millis() as i64),
    };
    Ok((key, UniqueStates::with(finals), period_ms))
}

/// SHA-256 of the kind and the arguments as canonical JSON (keys sorted), in hex.
fn args_digest(kind: &str, args: &str) -> Result<String, EnqueueError> {
    let value: serde_json::Value = serde_json::from_str(args)
        .map_err(|e| invalid(format!("the arguments do not read back as JSON: {e}")))?;
    // serde_json's map is ordered by key (no `preserve_order`): this text is canonical.
    let canonical = value.to_string();
    let mut hash = Sha256::new();
    hash.update(kind.as_bytes());
    hash.update([0]);
    hash.update(canonical.as_bytes());
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(u: Unique, queue: &str, args: &str) -> String {
        resolve(u, "report", queue, args).unwrap().0
    }

    #[test]
    fn args_keys_ignore_field_order_and_tell_kinds_apart() {
        let a = key(Unique::by_args(), "q", r#"{"b":1,"a":[1,{"y":2,"x":1}]}"#);
        let b = key(Unique::by_args(), "q", r#"{"a":[1,{"x":1,"y":2}],"b":1}"#);
        assert_eq!(a, b);
        assert!(
            a.starts_with("report:") && a.len() == "report:".len() + 64,
            "{a}"
        );
        let other_kind = resolve(Unique::by_args(), "invoice", "q", r#"{"b":1}"#).unwrap();
        assert_ne!(other_kind.0, key(Unique::by_args(), "q", r#"{"b":1}"#));
        assert_ne!(
            a,
            key(Unique::by_args(), "q", r#"{"b":2,"a":[1,{"y":2,"x":1}]}"#)
        );
    }

    #[test]
    fn per_queue_keys_cannot_collide_across_queues() {
        let a = key(Unique::key("b:c").per_queue(), "a", "{}");
        let b = key(Unique::key("c").per_queue(), "a:b", "{}");
        assert_ne!(a, b);
        assert_eq!(key(Unique::key("k"), "a", "{}"), "k");
    }

    #[test]
    fn states_and_periods_resolve_as_documented() {
        let (_, s, p) = resolve(Unique::key("k"), "r", "q", "{}").unwrap();
        assert_eq!((s, p), (UniqueStates::NOT_FINAL, None));
        let (_, s, p) = resolve(
            Unique::key("k").period(Duration::from_secs(3600)),
            "r",
            "q",
            "{}",
        )
        .unwrap();
        assert_eq!(
            (s, p),
            (UniqueStates::with([JobState::Completed]), Some(3_600_000))
        );
        let no_final = Unique::key("k")
            .states([JobState::Running])
            .period(Duration::from_secs(1));
        let e = resolve(no_final, "r", "q", "{}").unwrap_err().to_string();
        assert!(e.contains("does nothing"), "{e}");
        let e = resolve(Unique::key("k").period(Duration::MAX), "r", "q", "{}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of range"), "{e}");
        let e = resolve(
            Unique::key("k".repeat(1020)).per_queue(),
            "r",
            "queue",
            "{}",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1024-byte limit"), "{e}");
    }
}
