//! Where this process's next claim of a queue starts (migration 12, `claim_ids_from`).
//!
//! A snapshot held open anywhere on the database (a transaction left idle, a long
//! `REPEATABLE READ` report) keeps the claim index's entry for every job claimed since, at the
//! front of its queue; a claim that walks the index from the front visits all of them before
//! the first job it can take, and the queue sinks (13 ms per claim after 45 s at 1,500
//! jobs/s, then seconds). So each claim starts at a floor learned from the previous ones —
//! the first job the last claim took, or 200 ms before the last one's `run_at`, whichever
//! is lower — and skips what lies below it.
//!
//! A job can become available below the floor: a retry by hand of an old job, a promotion
//! later than the margin, a transaction that enqueued long before it committed. So a claim
//! starts from the front every [`FRONT_EVERY`], or less often when that walk is long (a held
//! snapshot), never less often than [`FRONT_MAX`]; such a job waits at most that. Jobs
//! of a more urgent priority than the floor's are always walked from the front (the floor
//! never delays priority).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use errand_core::JobRow;

/// How often a queue's claim walks from the front of the queue, at least.
pub(crate) const FRONT_EVERY: Duration = Duration::from_secs(1);

/// A walk from the front that took `t` is not made again before `FRONT_COST × t` (when that
/// is longer than [`FRONT_EVERY`]): what a held snapshot keeps makes it long (80 ms after
/// five minutes at 1,500 jobs/s), and every claim of the queue in this process waits for it.
const FRONT_COST: u32 = 50;

/// The longest a queue's claims go without walking from the front.
pub(crate) const FRONT_MAX: Duration = Duration::from_secs(10);

/// How far before the last claimed job's `run_at` the floor stays: jobs promoted or
/// enqueued with a `run_at` up to this much older than the jobs just claimed are met
/// without waiting for a walk from the front. Each claim walks what was claimed in this
/// span (300 entries at 1,500 jobs/s).
const MARGIN: chrono::TimeDelta = chrono::TimeDelta::milliseconds(200);

/// A position in claim order: `(priority, run_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) priority: i16,
    pub(crate) run_at: DateTime<Utc>,
    pub(crate) id: i64,
}

impl Key {
    pub(crate) fn of(job: &JobRow) -> Self {
        Key {
            priority: job.priority,
            run_at: job.run_at,
            id: job.id,
        }
    }

    /// The lowest key at `priority` and `run_at` less the margin.
    fn before(priority: i16, run_at: DateTime<Utc>) -> Self {
        Key {
            priority,
            run_at: run_at.checked_sub_signed(MARGIN).unwrap_or(run_at),
            id: i64::MIN,
        }
    }
}

#[derive(Debug)]
struct Floor {
    key: Key,
    /// When the next claim of this queue walks from the front.
    front_at: Instant,
}

/// The floors of the queues this process claims.
#[derive(Debug, Default)]
pub(crate) struct ClaimFloors(Mutex<HashMap<String, Floor>>);

impl ClaimFloors {
    /// Where the next claim of `queue` starts: `None` for the front (no floor yet, or the
    /// time for a walk from the front has come).
    pub(crate) fn get(&self, queue: &str) -> Option<Key> {
        self.get_at(queue, Instant::now())
    }

    fn get_at(&self, queue: &str, now: Instant) -> Option<Key> {
        let floors = self.0.lock().unwrap_or_else(|e| e.into_inner());
        floors
            .get(queue)
            .filter(|f| now < f.front_at)
            .map(|f| f.key)
    }

    /// Learns from a claim of `queue` that started at `from` (`None`: the front), took
    /// `took` and returned jobs at `keys`: no job it could take lay below the first it took,
    /// nor (within the margin) below the last one's `run_at`. A claim that took nothing teaches nothing (the queue
    /// may be paused or at its limit, with jobs waiting): the floor stays, or, from the
    /// front, there is none until a claim takes something.
    pub(crate) fn learn(&self, queue: &str, from: Option<Key>, took: Duration, keys: &[Key]) {
        self.learn_at(queue, from, took, keys, Instant::now());
    }

    fn learn_at(&self, queue: &str, from: Option<Key>, took: Duration, keys: &[Key], now: Instant) {
        let mut floors = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(&first), Some(&last)) = (keys.iter().min(), keys.iter().max()) else {
            if from.is_none() {
                floors.remove(queue);
            }
            return;
        };
        let learned = first.min(Key::before(last.priority, last.run_at));
        match (floors.get_mut(queue), from) {
            (Some(floor), Some(_)) => floor.key = floor.key.max(learned),
            // A claim from a floor that is gone: the next one walks from the front.
            (None, Some(_)) => {}
            (_, None) => {
                floors.insert(
                    queue.to_owned(),
                    Floor {
                        key: learned,
                        front_at: now
                            + FRONT_EVERY
                                .max(took.saturating_mul(FRONT_COST))
                                .min(FRONT_MAX),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn key(priority: i16, secs: i64, id: i64) -> Key {
        Key {
            priority,
            run_at: Utc.timestamp_opt(1_900_000_000 + secs, 0).unwrap(),
            id,
        }
    }

    #[test]
    fn a_claim_from_the_front_sets_the_lower_of_its_first_job_and_the_margin() {
        let floors = ClaimFloors::default();
        let now = Instant::now();
        assert_eq!(floors.get_at("q", now), None, "no floor before any claim");
        // Spread over 9 s: the first job is lower than 200 ms before the last.
        floors.learn_at(
            "q",
            None,
            Duration::ZERO,
            &[key(0, 1, 10), key(0, 10, 20)],
            now,
        );
        assert_eq!(floors.get_at("q", now), Some(key(0, 1, 10)));
        // Within one second: 200 ms before the last one's run_at.
        let close = [key(0, 100, 30), key(0, 100, 40)];
        floors.learn_at("q", None, Duration::ZERO, &close, now);
        let floor = floors.get_at("q", now).unwrap();
        assert_eq!((floor.priority, floor.id), (0, i64::MIN));
        assert_eq!(floor.run_at, close[1].run_at - MARGIN);
    }

    #[test]
    fn claims_from_the_floor_only_raise_it_and_empty_claims_teach_nothing() {
        let floors = ClaimFloors::default();
        let now = Instant::now();
        floors.learn_at("q", None, Duration::ZERO, &[key(0, 50, 5)], now);
        let floor = floors.get_at("q", now).unwrap();
        // A claim from the floor that took older jobs (it raced a claim from the front).
        floors.learn_at("q", Some(floor), Duration::ZERO, &[key(0, 1, 1)], now);
        assert_eq!(floors.get_at("q", now), Some(floor), "not lowered");
        floors.learn_at("q", Some(floor), Duration::ZERO, &[], now);
        assert_eq!(
            floors.get_at("q", now),
            Some(floor),
            "a claim that took nothing"
        );
        floors.learn_at("q", Some(floor), Duration::ZERO, &[key(0, 90, 9)], now);
        assert!(floors.get_at("q", now).unwrap() > floor, "raised");
        // From the front, nothing found (paused, at its limit, or empty): no floor.
        floors.learn_at("q", None, Duration::ZERO, &[], now);
        assert_eq!(floors.get_at("q", now), None);
        // A claim from a floor that is gone does not set one (only the front does).
        floors.learn_at("q", Some(floor), Duration::ZERO, &[key(0, 90, 9)], now);
        assert_eq!(floors.get_at("q", now), None);
    }

    #[test]
    fn the_front_is_walked_again_sooner_when_its_walk_was_cheap() {
        let floors = ClaimFloors::default();
        let now = Instant::now();
        floors.learn_at("q", None, Duration::from_millis(1), &[key(0, 1, 1)], now);
        assert!(floors.get_at("q", now + FRONT_EVERY / 2).is_some());
        assert_eq!(floors.get_at("q", now + FRONT_EVERY), None);
        // 100 ms from the front (a held snapshot): not again for 50 × that.
        floors.learn_at("q", None, Duration::from_millis(100), &[key(0, 1, 1)], now);
        assert!(floors
            .get_at("q", now + Duration::from_millis(4_900))
            .is_some());
        assert_eq!(floors.get_at("q", now + Duration::from_secs(5)), None);
        // Never longer than FRONT_MAX, however long the walk (no overflow).
        for took in [Duration::from_secs(60), Duration::MAX] {
            floors.learn_at("q", None, took, &[key(0, 1, 1)], now);
            assert_eq!(floors.get_at("q", now + FRONT_MAX), None);
        }
        // Queues are separate.
        assert_eq!(floors.get_at("other", now), None);
    }
}
