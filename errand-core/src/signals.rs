use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};

/// In-process wake-ups, one per queue: stores fire them after an insert or a promotion makes
/// jobs available, producers wait on them instead of polling. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct QueueSignals {
    inner: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    scheduled: Arc<Notify>,
    /// Bumped on every change of a queue's record: each watcher has its own receiver, so
    /// several workers in one process all see a pause.
    controls: Arc<watch::Sender<u64>>,
    /// Bumped whenever jobs reach a final state: what `Client::wait` waits on.
    ended: Arc<watch::Sender<u64>>,
}

impl QueueSignals {
    /// The signal for `queue`, created on first use.
    pub fn get(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(queue.to_owned()).or_default().clone()
    }

    /// Wakes the producer of `queue`, if one is listening. A wake-up that finds no waiter is
    /// kept, so a producer that was busy claiming does not miss it.
    pub fn notify(&self, queue: &str) {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(queue) {
            n.notify_one();
        }
    }

    /// Wakes every queue's producer and the scheduler (after missed notifications, e.g. a
    /// reconnect).
    pub fn notify_all(&self) {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for n in map.values() {
            n.notify_one();
        }
        self.scheduled.notify_one();
        self.notify_controls();
        self.notify_ended();
    }

    /// The wake-up of a worker's queue watcher: changes when a queue is paused or resumed,
    /// so it looks at the queues' records at once instead of at its next poll.
    pub fn controls(&self) -> watch::Receiver<u64> {
        self.controls.subscribe()
    }

    /// Wakes every queue watcher.
    pub fn notify_controls(&self) {
        self.controls.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Changes whenever jobs reach a final state in this process (or, where the store hears
    /// other processes, a job someone waits for ends there): subscribe, then look at the
    /// job, then wait for a change, and no end is missed.
    pub fn ended(&self) -> watch::Receiver<u64> {
        self.ended.subscribe()
    }

    /// Wakes whoever waits for jobs to end.
    pub fn notify_ended(&self) {
        self.ended.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The scheduler's wake-up: fired when jobs become `scheduled` or `retryable` for later,
    /// so it can sleep until the earliest is due instead of polling.
    pub fn scheduled(&self) -> Arc<Notify> {
        self.scheduled.clone()
    }

    /// Wakes the scheduler.
    pub fn notify_scheduled(&self) {
        self.scheduled.notify_one();
    }
}
