//! The in-memory store: the full [`Store`] contract in one process, nothing persisted.
//!
//! For tests and examples. It passes the same conformance suite as the database stores, so
//! code tested against it behaves the same on SQLite and Postgres (except that nothing
//! survives a restart).

mod workflow;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errand_core::{
    claim_metered, unique_expired, CancelResult, ClaimRequest, DeleteResult, ErrorRecord, Finish,
    InsertResult, JobId, JobRow, JobState, LeaseRef, ListFilter, Meter, MeteredQueue, NewJob,
    Progress, PromoteReport, QueueLimits, QueueRecord, QueueSignals, RescueReport, StateCount,
    Store, StoreError, Take, UniqueStates, KEY_BUCKETS_PRUNED, UNKEYED_SCAN,
};

/// A [`Store`] kept in memory. Clones share the same jobs.
///
/// ```
/// # tokio_test_block(async {
/// use errand::{Client, MemoryStore};
/// let store = MemoryStore::new();
/// let client = Client::new(store.clone());
/// # });
/// # fn tokio_test_block(f: impl std::future::Future) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    signals: QueueSignals,
}

type AvailKey = (i16, DateTime<Utc>, JobId);

#[derive(Debug, Default)]
struct Inner {
    next_id: JobId,
    jobs: BTreeMap<JobId, JobRow>,
    /// Claim order per queue over `available` jobs only.
    available: HashMap<String, BTreeSet<AvailKey>>,
    /// unique_key → id of the job holding it (in a state its `unique_states` names).
    unique: HashMap<String, JobId>,
    /// Queue records, by name.
    queues: BTreeMap<String, QueueRecord>,
    /// Metered queues' token buckets and key cursors, by name.
    meters: HashMap<String, Meter>,
    /// Under a rate per key: each key's bucket (tokens, refilled at), by queue and key.
    key_buckets: BTreeMap<(String, String), (f64, DateTime<Utc>)>,
    /// Leadership leases, by name.
    leaders: HashMap<String, errand_core::Leader>,
    audit: Vec<errand_core::AuditEntry>,
    workers: HashMap<String, errand_core::WorkerRecord>,
    tally_mark: Option<DateTime<Utc>>,
    tallies: BTreeMap<(DateTime<Utc>, String, JobState), u64>,
    /// Workflows: steps, edges, and the settling of dependents.
    wf: workflow::Workflows,
    /// Wake-ups owed by settling, fired once the lock is released.
    wake: workflow::Wake,
}

/// One queue of the store during a metered claim (the lock held).
struct MemQueue<'a> {
    g: &'a mut Inner,
    queue: &'a str,
    /// The claiming worker and what it holds (see `ClaimRequest::held`).
    worker: &'a str,
    held: Option<u32>,
}

impl MemQueue<'_> {
    fn available(&self) -> impl Iterator<Item = &JobRow> {
        self.g
            .available
            .get(self.queue)
            .into_iter()
            .flatten()
            .filter_map(|(_, _, id)| self.g.jobs.get(id))
    }
}

impl MeteredQueue for MemQueue<'_> {
    async fn running(&mut self, key: Option<&str>) -> Result<u64, StoreError> {
        let n = self.g.jobs.values().filter(|r| {
            r.state == JobState::Running
                && r.queue == self.queue
                && match key {
                    Some(k) => r.partition_key.as_deref() == Some(k),
                    // The worker's own rows are counted as what it holds.
                    None => self.held.is_none() || r.attempted_by.as_deref() != Some(self.worker),
                }
        });
        let own = if key.is_none() {
            self.held.unwrap_or(0)
        } else {
            0
        };
        Ok(n.count() as u64 + u64::from(own))
    }

    async fn next_key(&mut self, after: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .available()
            .filter_map(|r| r.partition_key.as_deref())
            .filter(|k| *k > after)
            .min()
            .map(str::to_owned))
    }

    async fn take(&mut self, from: Take<'_>, n: u32) -> Result<Vec<JobId>, StoreError> {
        let jobs: Box<dyn Iterator<Item = &JobRow>> = match from {
            Take::InOrder => Box::new(self.available()),
            Take::Key(k) => Box::new(
                self.available()
                    .filter(move |r| r.partition_key.as_deref() == Some(k)),
            ),
            Take::Unkeyed => Box::new(
                self.available()
                    .take(UNKEYED_SCAN as usize)
                    .filter(|r| r.partition_key.is_none()),
            ),
        };
        Ok(jobs.take(n as usize).map(|r| r.id).collect())
    }

    async fn key_bucket(&mut self, key: &str) -> Result<Option<(f64, DateTime<Utc>)>, StoreError> {
        Ok(self
            .g
            .key_buckets
            .get(&(self.queue.to_owned(), key.to_owned()))
            .copied())
    }

    async fn set_key_bucket(
        &mut self,
        key: &str,
        tokens: f64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.g
            .key_buckets
            .insert((self.queue.to_owned(), key.to_owned()), (tokens, at));
        Ok(())
    }

    async fn prune_key_buckets(&mut self, full_before: DateTime<Utc>) -> Result<(), StoreError> {
        let queue = self.queue;
        let mut pruned = 0;
        self.g.key_buckets.retain(|(q, _), (_, at)| {
            let full = q == queue && *at < full_before && pruned < KEY_BUCKETS_PRUNED;
            pruned += u32::from(full);
            !full
        });
        Ok(())
    }
}

/// Runs a future that never waits (the memory store's metered claim, under its lock).
fn at_once<T>(fut: impl std::future::Future<Output = T>) -> T {
    struct Never;
    impl std::task::Wake for Never {
        fn wake(self: Arc<Self>) {}
    }
    let waker = std::task::Waker::from(Arc::new(Never));
    let mut cx = std::task::Context::from_waker(&waker);
    match std::pin::pin!(fut).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("the memory store's queue never waits"),
    }
}

fn avail_key(row: &JobRow) -> AvailKey {
    (row.priority, row.run_at, row.id)
}

impl Inner {
    /// Moves a job to `state`, keeping the indexes in step. The job's ordering fields
    /// (priority, run_at) must already hold their new values.
    fn set_state(&mut self, id: JobId, old_key: AvailKey, state: JobState) {
        let Some(row) = self.jobs.get_mut(&id) else {
            return;
        };
        if row.state == JobState::Available {
            if let Some(set) = self.available.get_mut(&row.queue) {
                set.remove(&old_key);
            }
        }
        let old = row.state;
        row.state = state;
        if state == JobState::Available {
            self.available
                .entry(row.queue.clone())
                .or_default()
                .insert(avail_key(row));
        }
        if !row.unique_states.holds(state) {
            self.release_key(id);
        }
        self.state_changed(id, old, state);
    }

    /// Lets go of the unique key job `id` holds, if it holds one.
    fn release_key(&mut self, id: JobId) {
        if let Some(key) = self.jobs.get(&id).and_then(|r| r.unique_key.as_ref()) {
            if self.unique.get(key) == Some(&id) {
                self.unique.remove(key);
            }
        }
    }

    /// The job holding `key` at `now`, after letting go of a holder whose uniqueness period
    /// has passed since it finished.
    fn holder(&mut self, key: &str, now: DateTime<Utc>) -> Option<JobId> {
        let id = *self.unique.get(key)?;
        let row = self.jobs.get_mut(&id)?;
        if unique_expired(row.state, row.finalized_at, row.unique_for_ms, now) {
            row.unique_states = UniqueStates::NOT_FINAL;
            self.unique.remove(key);
            return None;
        }
        Some(id)
    }

    /// Applies `f` to the row, then moves it to `state` with indexes updated.
    fn update(&mut self, id: JobId, state: JobState, f: impl FnOnce(&mut JobRow)) {
        let Some(row) = self.jobs.get_mut(&id) else {
            return;
        };
        let old_key = avail_key(row);
        f(row);
        self.set_state(id, old_key, state);
    }

    fn running_attempt(&self, lease: &LeaseRef) -> bool {
        self.jobs
            .get(&lease.id)
            .is_some_and(|r| r.state == JobState::Running && r.attempt == lease.attempt)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied change behind that
        // matters more than stopping every worker, so keep going with the data as it is.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn insert(
        &self,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut woken = Vec::new();
        let mut scheduled = false;
        {
            let mut g = self.lock();
            for job in jobs {
                if let Some(key) = &job.unique_key {
                    if let Some(id) = g.holder(key, now) {
                        out.push(InsertResult {
                            id,
                            inserted: false,
                        });
                        continue;
                    }
                }
                g.next_id += 1;
                let id = g.next_id;
                let state = job.state_at(now);
                if let Some(key) = &job.unique_key {
                    g.unique.insert(key.clone(), id);
                }
                // Entered as scheduled; `set_state` moves it to its state and indexes it.
                let mut row = job.into_row(id, now);
                row.state = JobState::Scheduled;
                let key = avail_key(&row);
                if state == JobState::Available && !woken.contains(&row.queue) {
                    woken.push(row.queue.clone());
                }
                scheduled |= state == JobState::Scheduled;
                g.jobs.insert(id, row);
                g.set_state(id, key, state);
                out.push(InsertResult { id, inserted: true });
            }
        }
        for q in woken {
            self.signals.notify(&q);
        }
        if scheduled {
            self.signals.notify_scheduled();
        }
        Ok(out)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError> {
        let mut g = self.lock();
        let ids: Vec<JobId> = match g.queues.get(&req.queue).cloned() {
            Some(record)
                if record.paused || record.max_running.is_some() || record.is_metered() =>
            {
                let meter = g.meters.get(&req.queue).cloned().unwrap_or_default();
                let mut q = MemQueue {
                    g: &mut g,
                    queue: &req.queue,
                    worker: &req.worker_id,
                    held: req.held,
                };
                let (ids, meter) =
                    at_once(claim_metered(&mut q, &record, meter, req.limit, req.now))?;
                g.meters.insert(req.queue.clone(), meter);
                ids
            }
            _ => match g.available.get(&req.queue) {
                Some(set) => set
                    .iter()
                    .take(req.limit as usize)
                    .map(|(_, _, id)| *id)
                    .collect(),
                None => return Ok(Vec::new()),
            },
        };
        let lease_until = errand_core::later(req.now, req.lease);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            g.update(id, JobState::Running, |r| {
                r.attempt += 1;
                r.attempted_at = Some(req.now);
                r.attempted_by = Some(req.worker_id.clone());
                r.lease_expires_at = Some(lease_until);
            });
            out.push(g.jobs[&id].clone());
        }
        Ok(out)
    }

    async fn finish(&self, batch: &[Finish]) -> Result<Vec<JobId>, StoreError> {
        let mut g = self.lock();
        let mut applied = Vec::with_capacity(batch.len());
        let mut woken = Vec::new();
        let mut scheduled = false;
        let mut ended = false;
        for f in batch {
            if !g.running_attempt(&f.lease) {
                continue;
            }
            let effect = f.effect();
            ended |= effect.state.is_final();
            match effect.state {
                JobState::Available => {
                    if let Some(r) = g.jobs.get(&f.lease.id) {
                        woken.push(r.queue.clone());
                    }
                }
                JobState::Scheduled | JobState::Retryable => scheduled = true,
                _ => {}
            }
            g.update(f.lease.id, effect.state, |r| {
                r.lease_expires_at = None;
                r.attempt += effect.attempt_delta;
                if let Some(t) = effect.run_at {
                    r.run_at = t;
                }
                if let Some(e) = effect.error {
                    r.errors.push(e.clone());
                }
                if effect.finalized_at.is_some() {
                    r.finalized_at = effect.finalized_at;
                }
                if let Some(result) = effect.result {
                    r.result = Some(result.to_owned());
                }
            });
            applied.push(f.lease.id);
        }
        let settled = std::mem::take(&mut g.wake);
        drop(g);
        settled.fire(&self.signals);
        for q in &woken {
            self.signals.notify(q);
        }
        if scheduled {
            self.signals.notify_scheduled();
        }
        if ended {
            self.signals.notify_ended();
        }
        Ok(applied)
    }

    async fn set_progress(&self, lease: LeaseRef, progress: &Progress) -> Result<bool, StoreError> {
        let mut g = self.lock();
        if !g.running_attempt(&lease) {
            return Ok(false);
        }
        if let Some(r) = g.jobs.get_mut(&lease.id) {
            r.progress = Some(progress.clone());
        }
        Ok(true)
    }

    async fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError> {
        let mut g = self.lock();
        let mut held = Vec::with_capacity(leases.len());
        for l in leases {
            if g.running_attempt(l) {
                if let Some(r) = g.jobs.get_mut(&l.id) {
                    r.lease_expires_at = Some(until);
                }
                held.push(l.id);
            }
        }
        Ok(held)
    }

    async fn release(&self, leases: &[LeaseRef], now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let mut n = 0;
        for l in leases {
            if g.running_attempt(l) {
                g.update(l.id, JobState::Available, |r| {
                    r.attempt -= 1;
                    r.lease_expires_at = None;
                    r.run_at = r.run_at.min(now);
                });
                n += 1;
            }
        }
        if n > 0 {
            let queues: BTreeSet<String> = leases
                .iter()
                .filter_map(|l| g.jobs.get(&l.id).map(|r| r.queue.clone()))
                .collect();
            drop(g);
            for q in queues {
                self.signals.notify(&q);
            }
        }
        Ok(n)
    }

    async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<RescueReport, StoreError> {
        let mut g = self.lock();
        let expired: Vec<(JobId, bool)> = g
            .jobs
            .values()
            .filter(|r| r.state == JobState::Running && r.lease_expires_at.is_some_and(|t| t < now))
            .take(limit as usize)
            .map(|r| (r.id, r.attempt >= r.max_attempts))
            .collect();
        let mut report = RescueReport::default();
        for (id, exhausted) in expired {
            let state = if exhausted {
                report.discarded += 1;
                JobState::Discarded
            } else {
                report.retried += 1;
                JobState::Retryable
            };
            g.update(id, state, |r| {
                r.errors.push(rescue_error(r, now));
                r.lease_expires_at = None;
                r.run_at = now;
                if exhausted {
                    r.finalized_at = Some(now);
                }
            });
        }
        let settled = std::mem::take(&mut g.wake);
        drop(g);
        settled.fire(&self.signals);
        if report.discarded > 0 {
            self.signals.notify_ended();
        }
        Ok(report)
    }

    async fn promote_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<PromoteReport, StoreError> {
        let mut g = self.lock();
        let due: Vec<(JobId, String)> = g
            .jobs
            .values()
            .filter(|r| {
                matches!(r.state, JobState::Scheduled | JobState::Retryable) && r.run_at <= now
            })
            .take(limit as usize)
            .map(|r| (r.id, r.queue.clone()))
            .collect();
        let mut report = PromoteReport::default();
        let hit_limit = due.len() == limit as usize;
        for (id, queue) in due {
            g.update(id, JobState::Available, |_| {});
            report.promoted += 1;
            if !report.queues.contains(&queue) {
                report.queues.push(queue);
            }
        }
        report.next_due = if hit_limit {
            Some(now)
        } else {
            g.jobs
                .values()
                .filter(|r| matches!(r.state, JobState::Scheduled | JobState::Retryable))
                .map(|r| r.run_at)
                .min()
        };
        drop(g);
        for q in &report.queues {
            self.signals.notify(q);
        }
        Ok(report)
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelResult, StoreError> {
        let mut g = self.lock();
        let Some(row) = g.jobs.get(&id) else {
            return Ok(CancelResult::NotFound);
        };
        if row.state.is_final() {
            return Ok(CancelResult::AlreadyFinal(row.clone()));
        }
        g.update(id, JobState::Cancelled, |r| {
            r.finalized_at = Some(now);
            r.lease_expires_at = None;
        });
        let row = g.jobs[&id].clone();
        let settled = std::mem::take(&mut g.wake);
        drop(g);
        settled.fire(&self.signals);
        self.signals.notify_ended();
        Ok(CancelResult::Cancelled(row))
    }

    async fn set_queue_paused(
        &self,
        queue: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<QueueRecord, StoreError> {
        errand_core::check_queue_name(queue)?;
        let record = {
            let mut g = self.lock();
            let limits = g.queues.get(queue).map(|q| q.limits()).unwrap_or_default();
            let record = QueueRecord::new(queue, paused, now).with_limits(limits);
            g.queues.insert(queue.to_owned(), record.clone());
            record
        };
        self.signals.notify_controls();
        if !paused {
            self.signals.notify(queue);
        }
        Ok(record)
    }

    async fn set_queue_limits(
        &self,
        queue: &str,
        limits: &QueueLimits,
        now: DateTime<Utc>,
    ) -> Result<QueueRecord, StoreError> {
        errand_core::check_queue_limits(queue, limits)?;
        let record = {
            let mut g = self.lock();
            let old = g.queues.get(queue).cloned();
            let paused = old.as_ref().is_some_and(|q| q.paused);
            let record = QueueRecord::new(queue, paused, now).with_limits(*limits);
            let old = old.map(|q| q.limits()).unwrap_or_default();
            if let Some(m) = g.meters.get_mut(queue) {
                // The walk over the keys starts afresh; a new rate with a full bucket.
                m.cursor = None;
                if old.rate != limits.rate {
                    m.tokens = None;
                }
            }
            if old.rate_per_key != limits.rate_per_key {
                g.key_buckets.retain(|(q, _), _| q != queue);
            }
            g.queues.insert(queue.to_owned(), record.clone());
            record
        };
        self.signals.notify_controls();
        self.signals.notify(queue);
        Ok(record)
    }

    async fn lead(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let until = errand_core::later(now, lease);
        match g.leaders.get_mut(name) {
            Some(l) if l.holder == holder => l.expires_at = until,
            Some(l) if l.expires_at > now => return Ok(false),
            _ => {
                g.leaders.insert(
                    name.to_owned(),
                    errand_core::Leader::new(name, holder, now, until),
                );
            }
        }
        Ok(true)
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.leaders.get(name).is_some_and(|l| l.holder == holder) {
            g.leaders.remove(name);
        }
        Ok(())
    }

    async fn leader(&self, name: &str) -> Result<Option<errand_core::Leader>, StoreError> {
        Ok(self.lock().leaders.get(name).cloned())
    }

    async fn record_audit(
        &self,
        entry: &errand_core::NewAudit,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let mut g = self.lock();
        let id = g.audit.last().map_or(1, |e| e.id + 1);
        g.audit
            .push(errand_core::AuditEntry::new(id, now, entry.clone()));
        Ok(id)
    }

    async fn tally_finished(
        &self,
        upto: DateTime<Utc>,
        max_window: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let floor = errand_core::earlier(upto, max_window);
        let from = g.tally_mark.map_or(floor, |m| m.max(floor));
        if from >= upto {
            return Ok(0);
        }
        let mut found: Vec<(DateTime<Utc>, String, JobState)> = Vec::new();
        for r in g.jobs.values() {
            if let Some(t) = r
                .finalized_at
                .filter(|t| r.state.is_final() && *t > from && *t <= upto)
            {
                found.push((errand_core::minute_of(t), r.queue.clone(), r.state));
            }
        }
        let n = found.len() as u64;
        for k in found {
            *g.tallies.entry(k).or_default() += 1;
        }
        g.tally_mark = Some(upto);
        let keep = errand_core::earlier(upto, errand_core::TALLY_KEPT);
        g.tallies.retain(|(m, _, _), _| *m >= keep);
        Ok(n)
    }

    async fn finished_per_minute(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<errand_core::MinuteCount>, StoreError> {
        Ok(self
            .lock()
            .tallies
            .iter()
            .filter(|((m, _, _), _)| *m >= since)
            .map(|((m, q, s), n)| errand_core::MinuteCount::new(*m, q.clone(), *s, *n))
            .collect())
    }

    async fn register_worker(&self, w: &errand_core::WorkerRecord) -> Result<(), StoreError> {
        self.lock().workers.insert(w.id.clone(), w.clone());
        Ok(())
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), StoreError> {
        self.lock().workers.remove(id);
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<errand_core::WorkerRecord>, StoreError> {
        let mut all: Vec<_> = self.lock().workers.values().cloned().collect();
        all.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(all)
    }

    async fn forget_workers(&self, silent_since: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let before = g.workers.len();
        g.workers.retain(|_, w| w.heartbeat_at >= silent_since);
        Ok((before - g.workers.len()) as u64)
    }

    async fn audit_log(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<errand_core::AuditEntry>, StoreError> {
        let limit = if limit == 0 { 100 } else { limit as usize };
        let g = self.lock();
        Ok(g.audit
            .iter()
            .rev()
            .filter(|e| before.is_none_or(|b| e.id < b))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn queues_with_available(&self, queues: &[String]) -> Result<Vec<String>, StoreError> {
        let g = self.lock();
        Ok(queues
            .iter()
            .filter(|q| g.available.get(q.as_str()).is_some_and(|s| !s.is_empty()))
            .cloned()
            .collect())
    }

    async fn oldest_available(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let g = self.lock();
        let mut out: Vec<(String, DateTime<Utc>)> = g
            .available
            .iter()
            .filter_map(|(queue, set)| {
                let oldest = set
                    .iter()
                    .filter_map(|(_, _, id)| g.jobs.get(id))
                    .map(|r| r.run_at)
                    .min()?;
                Some((queue.clone(), oldest))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    async fn queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        Ok(self.lock().queues.values().cloned().collect())
    }

    async fn delete(&self, id: JobId) -> Result<DeleteResult, StoreError> {
        let mut g = self.lock();
        let Some(row) = g.jobs.get(&id) else {
            return Ok(DeleteResult::NotFound);
        };
        if row.state == JobState::Running {
            return Ok(DeleteResult::Running(row.clone()));
        }
        let before = row.clone();
        // A workflow step that has not ended ends for its dependents as a cancellation
        // would (they are cancelled, or released on `ignore_failure` edges); then its edges
        // go, each unsettled one no longer counted by its dependent.
        let now = Utc::now();
        if !before.state.is_final() {
            g.update(id, JobState::Cancelled, |r| {
                r.finalized_at.get_or_insert(now);
            });
        }
        g.forget_step(id, now);
        g.release_key(id);
        g.jobs.remove(&id);
        let settled = std::mem::take(&mut g.wake);
        drop(g);
        settled.fire(&self.signals);
        Ok(DeleteResult::Deleted(before))
    }

    async fn retry_now(&self, id: JobId, now: DateTime<Utc>) -> Result<Option<JobRow>, StoreError> {
        let mut g = self.lock();
        let Some(row) = g.jobs.get(&id) else {
            return Ok(None);
        };
        if matches!(row.state, JobState::Running | JobState::Pending) {
            return Ok(Some(row.clone()));
        }
        if let Some(key) = row.unique_key.clone() {
            match g.holder(&key, now) {
                Some(holder) if holder != id => return Ok(Some(g.jobs[&id].clone())),
                _ => {
                    g.unique.insert(key, id);
                }
            }
        }
        // A step whose dependencies have not all settled waits for them again.
        let to = if g.waits(id) {
            JobState::Pending
        } else {
            JobState::Available
        };
        g.update(id, to, |r| {
            r.run_at = now;
            r.finalized_at = None;
            r.result = None;
            r.progress = None;
            if r.attempt >= r.max_attempts {
                r.max_attempts = r.attempt + 1;
            }
        });
        let row = g.jobs[&id].clone();
        let settled = std::mem::take(&mut g.wake);
        drop(g);
        settled.fire(&self.signals);
        if to == JobState::Available {
            self.signals.notify(&row.queue);
        }
        Ok(Some(row))
    }

    async fn insert_workflow(
        &self,
        wf: &errand_core::NewWorkflow,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError> {
        let mut g = self.lock();
        let ids = g.insert_workflow(wf, now)?;
        let wake = std::mem::take(&mut g.wake);
        drop(g);
        wake.fire(&self.signals);
        Ok(ids)
    }

    async fn workflow(&self, id: &str) -> Result<Option<errand_core::WorkflowRecord>, StoreError> {
        Ok(self.lock().workflow(id))
    }

    async fn workflows(
        &self,
        limit: u32,
        before: Option<&str>,
    ) -> Result<Vec<errand_core::WorkflowSummary>, StoreError> {
        Ok(self.lock().workflows(limit, before))
    }

    async fn cancel_workflow(&self, id: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let n = g.cancel_workflow(id, now);
        let wake = std::mem::take(&mut g.wake);
        drop(g);
        wake.fire(&self.signals);
        Ok(n)
    }

    async fn job_step(&self, id: JobId) -> Result<Option<(String, String)>, StoreError> {
        Ok(self.lock().job_step(id))
    }

    async fn dependency_outputs(
        &self,
        id: JobId,
    ) -> Result<Vec<errand_core::DepOutput>, StoreError> {
        Ok(self.lock().dependency_outputs(id))
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRow>, StoreError> {
        Ok(self.lock().jobs.get(&id).cloned())
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRow>, StoreError> {
        let g = self.lock();
        let upper = filter.before_id.unwrap_or(JobId::MAX);
        let lower = filter.after_id.map_or(JobId::MIN, |a| a.saturating_add(1));
        if lower >= upper {
            return Ok(Vec::new());
        }
        let range = g.jobs.range(lower..upper).map(|(_, r)| r);
        let limit = filter.effective_limit() as usize;
        let pick = |r: &&JobRow| filter.matches(r);
        Ok(if filter.oldest_first {
            range.filter(pick).take(limit).cloned().collect()
        } else {
            range.rev().filter(pick).take(limit).cloned().collect()
        })
    }

    async fn count(&self, filter: &ListFilter) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .jobs
            .values()
            .filter(|r| filter.matches(r))
            .count() as u64)
    }

    async fn count_up_to(&self, filter: &ListFilter, cap: u64) -> Result<u64, StoreError> {
        let g = self.lock();
        let limit = usize::try_from(cap.saturating_add(1)).unwrap_or(usize::MAX);
        Ok(g.jobs
            .values()
            .filter(|r| filter.matches(r))
            .take(limit)
            .count() as u64)
    }

    async fn state_counts_up_to(
        &self,
        state: JobState,
        cap: u64,
    ) -> Result<Vec<StateCount>, StoreError> {
        let g = self.lock();
        let limit = usize::try_from(cap.saturating_add(1)).unwrap_or(usize::MAX);
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for r in g.jobs.values().filter(|r| r.state == state).take(limit) {
            *counts.entry(r.queue.clone()).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|(queue, count)| StateCount::new(queue, state, count))
            .collect())
    }

    async fn stats(&self, states: &[JobState]) -> Result<Vec<StateCount>, StoreError> {
        let g = self.lock();
        let mut counts: BTreeMap<(String, JobState), u64> = BTreeMap::new();
        for r in g
            .jobs
            .values()
            .filter(|r| states.is_empty() || states.contains(&r.state))
        {
            *counts.entry((r.queue.clone(), r.state)).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((queue, state), count)| StateCount::new(queue, state, count))
            .collect())
    }

    async fn prune(
        &self,
        state: JobState,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let mut old: Vec<(DateTime<Utc>, JobId)> = g
            .jobs
            .values()
            .filter(|r| r.state == state && state.is_final())
            .filter_map(|r| r.finalized_at.filter(|t| *t < before).map(|t| (t, r.id)))
            .collect();
        // Oldest first, as the SQL stores delete.
        old.sort_unstable();
        let old: Vec<JobId> = old
            .into_iter()
            .take(limit as usize)
            .map(|(_, id)| id)
            .collect();
        let now = Utc::now();
        for id in &old {
            g.release_key(*id);
            g.jobs.remove(id);
        }
        // After every pruned job is gone, so none of them is released.
        for id in &old {
            g.forget_step(*id, now);
        }
        let released = std::mem::take(&mut g.wake);
        drop(g);
        released.fire(&self.signals);
        Ok(old.len() as u64)
    }

    fn signals(&self) -> &QueueSignals {
        &self.signals
    }

    fn hears_other_processes(&self) -> bool {
        true
    }
}

fn rescue_error(r: &JobRow, now: DateTime<Utc>) -> ErrorRecord {
    ErrorRecord::new(
        r.attempt,
        now,
        errand_core::rescue_message(r.attempted_by.as_deref()),
    )
}
