//! The jobs this worker holds a lease on: running, or finished with the outcome not yet
//! written. The heartbeat extends exactly these leases; shutdown releases the running ones.

use std::collections::HashMap;
use std::sync::Mutex;

use errand_core::{JobId, LeaseRef};
use tokio::task::AbortHandle;

#[derive(Debug)]
enum Phase {
    /// Claimed: waiting in the producer's buffer, or running (abort handle once spawned).
    Running(Option<AbortHandle>),
    /// The job ended; its outcome waits in the completer.
    Recording,
    /// The job was stopped by shutdown before it ended: release it.
    Stopped,
}

#[derive(Debug)]
struct Entry {
    attempt: i32,
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
    entries: HashMap<JobId, Entry>,
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
            lease.id,
            Entry {
                attempt: lease.attempt,
                claim,
                phase: Phase::Running(None),
            },
        );
    }

    /// Whether this worker still holds the job's lease.
    pub(crate) fn holds(&self, id: JobId) -> bool {
        self.lock().entries.contains_key(&id)
    }

    pub(crate) fn spawned(&self, id: JobId, abort: AbortHandle) {
        if let Some(e) = self.lock().entries.get_mut(&id) {
            e.phase = Phase::Running(Some(abort));
        } else {
            // Lost its lease before it started.
            abort.abort();
        }
    }

    /// The job ended with an outcome. Returns `false` if the lease was lost meanwhile
    /// (the outcome would be ignored by the store anyway).
    pub(crate) fn ended(&self, id: JobId) -> bool {
        match self.lock().entries.get_mut(&id) {
            Some(e) => {
                e.phase = Phase::Recording;
                true
            }
            None => false,
        }
    }

    /// The job's task was aborted by shutdown.
    pub(crate) fn stopped(&self, id: JobId) {
        if let Some(e) = self.lock().entries.get_mut(&id) {
            e.phase = Phase::Stopped;
        }
    }

    /// The outcome was written (or found stale): forget the job.
    pub(crate) fn recorded(&self, ids: impl IntoIterator<Item = JobId>) {
        let mut g = self.lock();
        for id in ids {
            g.entries.remove(&id);
        }
    }

    /// Every lease held now.
    pub(crate) fn leases(&self) -> Vec<Held> {
        self.lock()
            .entries
            .iter()
            .map(|(&id, e)| Held {
                lease: LeaseRef {
                    id,
                    attempt: e.attempt,
                },
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
            let id = held.lease.id;
            let Some(e) = g.entries.get(&id) else {
                continue;
            };
            if e.claim != held.claim {
                continue;
            }
            if let Phase::Running(abort) = &e.phase {
                if let Some(abort) = abort {
                    abort.abort();
                }
                g.entries.remove(&id);
                stopped.push(id);
            }
        }
        stopped
    }

    /// Aborts every running job (shutdown past its grace period). Returns how many.
    pub(crate) fn abort_running(&self) -> usize {
        let g = self.lock();
        let mut n = 0;
        for e in g.entries.values() {
            if let Phase::Running(Some(abort)) = &e.phase {
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
        let ids: Vec<JobId> = g
            .entries
            .iter()
            .filter(|(_, e)| !matches!(e.phase, Phase::Recording))
            .map(|(&id, _)| id)
            .collect();
        ids.into_iter()
            .filter_map(|id| {
                g.entries.remove(&id).map(|e| LeaseRef {
                    id,
                    attempt: e.attempt,
                })
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
        assert!(f.ended(7));
        f.recorded([7]);
        f.claimed(lease(7, 1));
        assert!(
            f.lost(&seen).is_empty(),
            "the new claim is not the lost one"
        );
        assert!(f.holds(7));
        assert_eq!(f.lost(&f.leases()), vec![7]);
        assert!(!f.holds(7));
    }

    #[test]
    fn a_lost_lease_leaves_an_ended_job_to_the_completer() {
        let f = InFlight::default();
        f.claimed(lease(3, 2));
        let seen = f.leases();
        assert!(f.ended(3));
        assert!(f.lost(&seen).is_empty());
        assert!(f.holds(3), "its outcome still waits to be written");
        assert_eq!(f.take_unfinished(), vec![], "ended jobs are not released");
    }
}
