//! Which states of a job hold its unique key, and for how long a finished job goes on
//! holding it: stored per row, enforced by the database's unique index over the rows that
//! hold (never check-then-insert).

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::JobState;

/// The states in which a job holds its unique key, one bit per state (stored as such in the
/// `unique_states` column). Always includes every state that is not final: a job moving
/// into a holding state while another job holds its key could not move, so only the final
/// states (completed, discarded, cancelled) are a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "Vec<JobState>", from = "Vec<JobState>")]
pub struct UniqueStates(u8);

impl UniqueStates {
    /// The states that are not final: a job holds its key until it ends (the default).
    pub const NOT_FINAL: UniqueStates = UniqueStates(0b1111);

    /// The bit of `state` (also spelled out in [`UNIQUE_HOLDS_SQL`]).
    pub const fn bit(state: JobState) -> u8 {
        match state {
            // A workflow step carries no unique key (the client refuses one).
            JobState::Pending => 0,
            JobState::Scheduled => 1,
            JobState::Available => 2,
            JobState::Running => 4,
            JobState::Retryable => 8,
            JobState::Completed => 16,
            JobState::Discarded => 32,
            JobState::Cancelled => 64,
        }
    }

    /// The states that are not final, and these.
    pub fn with(states: impl IntoIterator<Item = JobState>) -> Self {
        states.into_iter().fold(Self::NOT_FINAL, |s, state| {
            UniqueStates(s.0 | Self::bit(state))
        })
    }

    /// Whether a job in `state` holds its key.
    pub fn holds(self, state: JobState) -> bool {
        self.0 & Self::bit(state) != 0
    }

    /// The stored value.
    pub fn bits(self) -> i16 {
        i16::from(self.0)
    }

    /// From the stored value; the states that are not final are always included, unknown
    /// bits dropped.
    pub fn from_bits(bits: i64) -> Self {
        UniqueStates((bits & 0x7f) as u8 | Self::NOT_FINAL.0)
    }

    /// The states, in lifecycle order.
    pub fn states(self) -> Vec<JobState> {
        JobState::ALL
            .into_iter()
            .filter(|s| self.holds(*s))
            .collect()
    }
}

impl Default for UniqueStates {
    fn default() -> Self {
        Self::NOT_FINAL
    }
}

impl From<UniqueStates> for Vec<JobState> {
    fn from(s: UniqueStates) -> Self {
        s.states()
    }
}

impl From<Vec<JobState>> for UniqueStates {
    fn from(v: Vec<JobState>) -> Self {
        UniqueStates::with(v)
    }
}

/// SQL (Postgres and SQLite alike) true for a row that holds its unique key: what the unique
/// index covers, and what a lookup of the holder must say to use that index.
pub const UNIQUE_HOLDS_SQL: &str = "unique_key IS NOT NULL AND (unique_states & (CASE state \
     WHEN 'scheduled' THEN 1 WHEN 'available' THEN 2 WHEN 'running' THEN 4 \
     WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'discarded' THEN 32 \
     WHEN 'cancelled' THEN 64 ELSE 0 END)) <> 0";

/// Whether a holder of a unique key found at `now` has let it go: it is final and its
/// uniqueness period (`unique_for_ms`) ran out after it finished. Such a holder is released
/// (its final states dropped from `unique_states`) before the insert is tried again.
pub fn unique_expired(
    state: JobState,
    finalized_at: Option<DateTime<Utc>>,
    unique_for_ms: Option<i64>,
    now: DateTime<Utc>,
) -> bool {
    match (state.is_final(), finalized_at, unique_for_ms) {
        (true, Some(done), Some(ms)) => TimeDelta::try_milliseconds(ms)
            .and_then(|period| done.checked_add_signed(period))
            .is_some_and(|until| until <= now),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_final_states_always_hold() {
        let s = UniqueStates::from_bits(0);
        assert_eq!(s, UniqueStates::NOT_FINAL);
        let with = UniqueStates::with([JobState::Completed]);
        assert!(with.holds(JobState::Completed) && with.holds(JobState::Running));
        assert!(!with.holds(JobState::Discarded));
        assert_eq!(UniqueStates::from_bits(i64::from(with.bits())), with);
        let json = serde_json::to_string(&with).unwrap();
        assert_eq!(
            json,
            r#"["scheduled","available","running","retryable","completed"]"#
        );
        assert_eq!(serde_json::from_str::<UniqueStates>(&json).unwrap(), with);
    }

    #[test]
    fn a_finished_holder_expires_after_its_period_only() {
        let t = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let s = |secs| t + TimeDelta::seconds(secs);
        let c = JobState::Completed;
        assert!(!unique_expired(c, Some(t), Some(60_000), s(59)));
        assert!(unique_expired(c, Some(t), Some(60_000), s(60)));
        assert!(
            !unique_expired(c, Some(t), None, s(1_000_000)),
            "no period: forever"
        );
        assert!(!unique_expired(JobState::Running, None, Some(1), s(60)));
        assert!(
            !unique_expired(c, Some(t), Some(i64::MAX), s(60)),
            "overflow: never"
        );
    }
}
