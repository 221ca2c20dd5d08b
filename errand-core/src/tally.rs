//! Jobs finished per minute: a small table of counts the maintenance leader keeps by
//! tallying, every few seconds, the jobs that reached a final state since its last tally
//! (read through the index on `finalized_at`, so each tally costs what finished since the
//! last one). Dashboards chart throughput and failures from it without counting the jobs
//! table.

use chrono::{DateTime, Utc};

use crate::JobState;

/// How long per-minute counts are kept.
pub const TALLY_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Jobs of one queue that reached one final state within one minute.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MinuteCount {
    /// The minute's start (UTC, seconds 0).
    pub minute: DateTime<Utc>,
    /// The queue.
    pub queue: String,
    /// The final state reached.
    pub state: JobState,
    /// How many.
    pub count: u64,
}

impl MinuteCount {
    /// A count.
    pub fn new(
        minute: DateTime<Utc>,
        queue: impl Into<String>,
        state: JobState,
        count: u64,
    ) -> Self {
        MinuteCount {
            minute,
            queue: queue.into(),
            state,
            count,
        }
    }
}

/// The start of `t`'s minute.
pub fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros - micros.rem_euclid(60_000_000)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_start_at_second_zero() {
        let t = DateTime::parse_from_rfc3339("2026-12-04T22:13:49.123456Z")
            .unwrap()
            .to_utc();
        assert_eq!(minute_of(t).to_rfc3339(), "2026-12-04T22:13:00+00:00");
        let before_epoch = DateTime::parse_from_rfc3339("1969-12-31T23:59:30Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            minute_of(before_epoch).to_rfc3339(),
            "1969-12-31T23:59:00+00:00"
        );
    }
}
