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
    phase: Phase,
}

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    map: Mutex<HashMap<JobId, Entry>>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn claimed(&self, lease: LeaseRef) {
        self.lock().insert(
            lease.id,
            Entry {
                attempt: lease.attempt,
                phase: Phase::Running(None),
            },
        );
    }

    /// Whether this worker still holds the job's lease.
    pub(crate) fn holds(&self, id: JobId) -> bool {
        self.lock().contains_key(&id)
    }

    pub(crate) fn spawned(&self, id: JobId, abort: AbortHandle) {
        if let Some(e) = self.lock().get_mut(&id) {
            e.phase = Phase::Running(Some(abort));
        } else {
            // Lost its lease before it started.
            abort.abort();
        }
    }

    /// The job ended with an outcome. Returns `false` if the lease was lost meanwhile
    /// (the outcome would be ignored by the store anyway).
    pub(crate) fn ended(&self, id: JobId) -> bool {
        match self.lock().get_mut(&id) {
            Some(e) => {
                e.phase = Phase::Recording;
                true
            }
            None => false,
        }
    }

    /// The job's task was aborted by shutdown.
    pub(crate) fn stopped(&self, id: JobId) {
        if let Some(e) = self.lock().get_mut(&id) {
            e.phase = Phase::Stopped;
        }
    }

    /// The outcome was written (or found stale): forget the job.
    pub(crate) fn recorded(&self, ids: impl IntoIterator<Item = JobId>) {
        let mut g = self.lock();
        for id in ids {
            g.remove(&id);
        }
    }

    pub(crate) fn leases(&self) -> Vec<LeaseRef> {
        self.lock()
            .iter()
            .map(|(&id, e)| LeaseRef {
                id,
                attempt: e.attempt,
            })
            .collect()
    }

    /// The store says these leases are no longer ours (cancelled, rescued): stop the jobs.
    pub(crate) fn lost(&self, ids: &[JobId]) {
        let mut g = self.lock();
        for id in ids {
            if let Some(Entry {
                phase: Phase::Running(Some(abort)),
                ..
            }) = g.remove(id)
            {
                abort.abort();
            }
        }
    }

    /// Aborts every running job (shutdown past its grace period). Returns how many.
    pub(crate) fn abort_running(&self) -> usize {
        let g = self.lock();
        let mut n = 0;
        for e in g.values() {
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
            .iter()
            .filter(|(_, e)| !matches!(e.phase, Phase::Recording))
            .map(|(&id, _)| id)
            .collect();
        ids.into_iter()
            .filter_map(|id| {
                g.remove(&id).map(|e| LeaseRef {
                    id,
                    attempt: e.attempt,
                })
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
