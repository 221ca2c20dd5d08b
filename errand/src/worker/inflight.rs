//! The jobs this worker holds a lease on: running, or finished with the outcome not yet
//! written. The heartbeat extends exactly these leases; shutdown releases the running ones.
//!
//! Entries are keyed by lease (job id and attempt): a job rescued from this worker and
//! claimed by it again is a second entry, so the first attempt, still running, can still
//! be stopped and its outcome is still fenced.

use std::collections::HashMap;
use std::sync::Mutex;

use std::sync::Arc;

use errand_core::{JobId, LeaseRef};
use tokio::task::AbortHandle;

use super::watchdog::Watch;

#[derive(Debug)]
enum Phase {
    /// Claimed: waiting in the producer's buffer, or running (abort handle and the
    /// watchdog's view once spawned).
    Running(Option<(AbortHandle, Arc<Watch>)>),
    /// The job ended; its outcome waits in the completer.
    Recording,
    /// The job was stopped by shutdown before it ended: release it.
    Stopped,
}

#[derive(Debug)]
struct Entry {
    /// Which claim this is: a job can end, come back (retry, snooze) and be claimed again by
    /// this worker, even with the same attempt number, while a heartbeat is under way.
    claim: u64,
    phase: Phase,
}

/// A lease as the heartbeat read it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub(crate) lease: LeaseRef,
    claim: u64,
}

#[derive(Debug, Default)]
struct Map {
    entries: HashMap<LeaseRef, Entry>,
    claims: u64,
}

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    map: Mutex<Map>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn claimed(&self, lease: LeaseRef) {
        let mut g = self.lock();
        g.claims += 1;
        let claim = g.claims;
        g.entries.insert(
            lease,
            Entry {
                claim,
                phase: Phase::Running(None),
            },
        );
    }

    /// Whether this worker still holds the job's lease.
    pub(crate) fn holds(&self, lease: LeaseRef) -> bool {
        self.lock().entries.contains_key(&lease)
    }

    pub(crate) fn spawned(&self, lease: LeaseRef, abort: AbortHandle, watch: Arc<Watch>) {
        if let Some(e) = self.lock().entries.get_mut(&lease) {
            e.phase = Phase::Running(Some((abort, watch)));
        } else {
            // Lost its lease before it started.
            abort.abort();
        }
    }

    /// The job ended with an outcome. Returns `false` if the lease was lost meanwhile
    /// (the outcome would be ignored by the store anyway).
    pub(crate) fn ended(&self, lease: LeaseRef) -> bool {
        match self.lock().entries.get_mut(&lease) {
            Some(e) => {
                e.phase = Phase::Recording;
                true
            }
            None => false,
        }
    }

    /// The job's task was aborted by shutdown.
    pub(crate) fn stopped(&self, lease: LeaseRef) {
        if let Some(e) = self.lock().entries.get_mut(&lease) {
            e.phase = Phase::Stopped;
        }
    }

    /// The outcome was written (or found stale): forget the job.
    pub(crate) fn recorded(&self, leases: impl IntoIterator<Item = LeaseRef>) {
        let mut g = self.lock();
        for lease in leases {
            g.entries.remove(&lease);
        }
    }

    /// Every lease held now.
    pub(crate) fn leases(&self) -> Vec<Held> {
        self.lock()
            .entries
            .iter()
            .map(|(&lease, e)| Held {
                lease,
                claim: e.claim,
            })
            .collect()
    }

    /// The store says these leases are no longer ours (cancelled, rescued): stop the jobs
    /// still running or waiting to start, and return their ids. Only the claims named are
    /// touched; jobs that already ended are left to the completer (their outcome may just
    /// have been written while the heartbeat ran, and if not, the store ignores it).
    pub(crate) fn lost(&self, leases: &[Held]) -> Vec<JobId> {
        let mut g = self.lock();
        let mut stopped = Vec::new();
        for held in leases {
            let Some(e) = g.entries.get(&held.lease) else {
                continue;
            };
            if e.claim != held.claim {
                continue;
            }
            if let Phase::Running(running) = &e.phase {
                if let Some((abort, _)) = running {
                    abort.abort();
                }
                g.entries.remove(&held.lease);
                stopped.push(held.lease.id);
            }
        }
        stopped
    }

    /// Aborts every running job (shutdown past its grace period). Returns how many.
    pub(crate) fn abort_running(&self) -> usize {
        let g = self.lock();
        let mut n = 0;
        for e in g.entries.values() {
            if let Phase::Running(Some((abort, _))) = &e.phase {
                abort.abort();
                n += 1;
            }
        }
        n
    }

    /// Leases of jobs stopped by shutdown, or still running after it gave up waiting;
    /// removes them.
    pub(crate) fn take_unfinished(&self) -> Vec<LeaseRef> {
        let mut g = self.lock();
        let leases: Vec<LeaseRef> = g
            .entries
            .iter()
            .filter(|(_, e)| !matches!(e.phase, Phase::Recording))
            .map(|(&lease, _)| lease)
            .collect();
        for lease in &leases {
            g.entries.remove(lease);
        }
        leases
    }

    /// The running jobs, for the watchdog.
    pub(crate) fn watches(&self) -> Vec<(LeaseRef, Arc<Watch>)> {
        self.lock()
            .entries
            .iter()
            .filter_map(|(&lease, e)| match &e.phase {
                Phase::Running(Some((_, w))) => Some((lease, w.clone())),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: JobId, attempt: i32) -> LeaseRef {
        LeaseRef { id, attempt }
    }

    #[test]
    fn a_lost_lease_stops_only_the_claim_the_heartbeat_saw() {
        let f = InFlight::default();
        f.claimed(lease(7, 1));
        let seen = f.leases();
        // Meanwhile the job ended, came back (a snooze gives the attempt back) and was
        // claimed again by this worker with the same attempt.
        assert!(f.ended(lease(7, 1)));
        f.recorded([lease(7, 1)]);
        f.claimed(lease(7, 1));
        assert!(
            f.lost(&seen).is_empty(),
            "the new claim is not the lost one"
        );
        assert!(f.holds(lease(7, 1)));
        assert_eq!(f.lost(&f.leases()), vec![7]);
        assert!(!f.holds(lease(7, 1)));
    }

    #[test]
    fn a_lost_lease_leaves_an_ended_job_to_the_completer() {
        let f = InFlight::default();
        f.claimed(lease(3, 2));
        let seen = f.leases();
        assert!(f.ended(lease(3, 2)));
        assert!(f.lost(&seen).is_empty());
        assert!(
            f.holds(lease(3, 2)),
            "its outcome still waits to be written"
        );
        assert_eq!(f.take_unfinished(), vec![], "ended jobs are not released");
    }

    #[test]
    fn a_second_attempt_of_the_same_job_does_not_replace_the_first() {
        // Attempt 1 was rescued from this worker (it stalled) and claimed by it again.
        let f = InFlight::default();
        f.claimed(lease(9, 1));
        f.claimed(lease(9, 2));
        assert_eq!(f.len(), 2);
        assert!(f.holds(lease(9, 1)) && f.holds(lease(9, 2)));
        // The store says attempt 1's lease is gone: only it is stopped.
        let first: Vec<Held> = f
            .leases()
            .into_iter()
            .filter(|h| h.lease.attempt == 1)
            .collect();
        assert_eq!(f.lost(&first), vec![9]);
        assert!(!f.holds(lease(9, 1)));
        assert!(f.holds(lease(9, 2)));
        let mut left = f.take_unfinished();
        left.sort_by_key(|l| l.attempt);
        assert_eq!(left, vec![lease(9, 2)]);
    }
}
