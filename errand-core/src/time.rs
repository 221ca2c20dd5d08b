//! Adding durations to timestamps without overflow.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The longest delay errand puts between now and a job's next run (100 years). A job may
/// return any `Duration` from `run` (`Duration::MAX` included): longer delays are clamped
/// to this, so no value a job returns can overflow a timestamp.
pub const MAX_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, with `d` clamped to [`MAX_DELAY`]. Never panics.
pub fn later(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    let d = TimeDelta::from_std(d.min(MAX_DELAY)).unwrap_or(TimeDelta::zero());
    at.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at - d`, with `d` clamped to [`MAX_DELAY`]. Never panics.
pub fn earlier(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    let d = TimeDelta::from_std(d.min(MAX_DELAY)).unwrap_or(TimeDelta::zero());
    at.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whether `d` was clamped by [`later`].
pub fn is_clamped(d: Duration) -> bool {
    d > MAX_DELAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_delays_are_clamped_not_overflowed() {
        let now = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let far = later(now, Duration::MAX);
        assert_eq!(far, now + TimeDelta::from_std(MAX_DELAY).unwrap());
        assert!(is_clamped(Duration::MAX));
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + TimeDelta::seconds(5)
        );
        assert_eq!(
            later(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            earlier(now, Duration::from_secs(5)),
            now - TimeDelta::seconds(5)
        );
        assert_eq!(
            earlier(DateTime::<Utc>::MIN_UTC, Duration::MAX),
            DateTime::<Utc>::MIN_UTC
        );
    }
}
