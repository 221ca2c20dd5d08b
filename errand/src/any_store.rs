//! A store chosen at run time: [`connect`](crate::connect()) opens SQLite, PostgreSQL or
//! memory by the URL's scheme (see `connect.rs`), so an application, a CLI or an example
//! picks its store from configuration without generics or an enum of its own.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errand_core::{
    CancelResult, ClaimRequest, DeleteResult, Finish, InsertResult, JobId, JobRow, JobState,
    LeaseRef, ListFilter, NewJob, Progress, PromoteReport, QueueLimits, QueueRecord, QueueSignals,
    RescueReport, StateCount, Store, StoreError,
};

use crate::MemoryStore;

/// Any of errand's stores, chosen at run time (see [`connect`](crate::connect()) and
/// [`AnyStore::builder`]). It is a [`Store`]: give it
/// to [`crate::Client`] and [`crate::Worker`] like any other, and reach the store under it
/// with `as_sqlite()` / `as_postgres()` (each with its store's feature; for its pool, or for
/// Postgres' transactional enqueue).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// A SQLite file (`sqlite://PATH`, `sqlite:PATH` or a plain path).
    #[cfg(feature = "sqlite")]
    Sqlite(crate::SqliteStore),
    /// A PostgreSQL schema (`postgres://…`, `postgresql://…`).
    #[cfg(feature = "postgres")]
    Postgres(crate::PgStore),
    /// The in-memory store (`memory://`): for tests; nothing is kept.
    Memory(MemoryStore),
}

impl AnyStore {
    /// The SQLite store, when this is one.
    #[cfg(feature = "sqlite")]
    pub fn as_sqlite(&self) -> Option<&crate::SqliteStore> {
        match self {
            AnyStore::Sqlite(s) => Some(s),
            _ => None,
        }
    }

    /// The Postgres store, when this is one.
    #[cfg(feature = "postgres")]
    pub fn as_postgres(&self) -> Option<&crate::PgStore> {
        match self {
            AnyStore::Postgres(s) => Some(s),
            _ => None,
        }
    }

    /// The schema version found and the one this build needs (memory: always current).
    pub async fn schema_version(&self) -> Result<(i64, i64), StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(s) => s.schema_version().await,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(s) => s.schema_version().await,
            AnyStore::Memory(_) => Ok((1, 1)),
        }
    }

    /// Which kind of store this is: `"sqlite"`, `"postgres"` or `"memory"`.
    pub fn kind(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(_) => "postgres",
            AnyStore::Memory(_) => "memory",
        }
    }
}

/// Calls the same method on whichever store this is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($s) => $e,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($s) => $e,
            AnyStore::Memory($s) => $e,
        }
    };
}

#[async_trait]
impl Store for AnyStore {
    async fn insert(
        &self,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        each!(self, s => s.insert(jobs, now).await)
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError> {
        each!(self, s => s.claim(req).await)
    }
    async fn finish(&self, batch: &[Finish]) -> Result<Vec<JobId>, StoreError> {
        each!(self, s => s.finish(batch).await)
    }
    async fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError> {
        each!(self, s => s.extend_leases(leases, until).await)
    }
    async fn release(&self, leases: &[LeaseRef], now: DateTime<Utc>) -> Result<u64, StoreError> {
        each!(self, s => s.release(leases, now).await)
    }
    async fn set_progress(&self, lease: LeaseRef, progress: &Progress) -> Result<bool, StoreError> {
        each!(self, s => s.set_progress(lease, progress).await)
    }
    async fn watch_end(&self, id: JobId) -> Result<(), StoreError> {
        each!(self, s => s.watch_end(id).await)
    }
    async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<RescueReport, StoreError> {
        each!(self, s => s.rescue_expired(now, limit).await)
    }
    async fn promote_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<PromoteReport, StoreError> {
        each!(self, s => s.promote_due(now, limit).await)
    }
    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelResult, StoreError> {
        each!(self, s => s.cancel(id, now).await)
    }
    async fn retry_now(&self, id: JobId, now: DateTime<Utc>) -> Result<Option<JobRow>, StoreError> {
        each!(self, s => s.retry_now(id, now).await)
    }
    async fn insert_workflow(
        &self,
        wf: &errand_core::NewWorkflow,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError> {
        each!(self, s => s.insert_workflow(wf, now).await)
    }
    async fn workflow(&self, id: &str) -> Result<Option<errand_core::WorkflowRecord>, StoreError> {
        each!(self, s => s.workflow(id).await)
    }
    async fn workflows(
        &self,
        limit: u32,
        before: Option<&str>,
    ) -> Result<Vec<errand_core::WorkflowSummary>, StoreError> {
        each!(self, s => s.workflows(limit, before).await)
    }
    async fn cancel_workflow(&self, id: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        each!(self, s => s.cancel_workflow(id, now).await)
    }
    async fn job_step(&self, id: JobId) -> Result<Option<(String, String)>, StoreError> {
        each!(self, s => s.job_step(id).await)
    }
    async fn dependency_outputs(
        &self,
        id: JobId,
    ) -> Result<Vec<errand_core::DepOutput>, StoreError> {
        each!(self, s => s.dependency_outputs(id).await)
    }
    async fn set_queue_paused(
        &self,
        queue: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<QueueRecord, StoreError> {
        each!(self, s => s.set_queue_paused(queue, paused, now).await)
    }
    async fn set_queue_limits(
        &self,
        queue: &str,
        limits: &QueueLimits,
        now: DateTime<Utc>,
    ) -> Result<QueueRecord, StoreError> {
        each!(self, s => s.set_queue_limits(queue, limits, now).await)
    }
    async fn queues_with_available(&self, queues: &[String]) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.queues_with_available(queues).await)
    }
    async fn oldest_available(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        each!(self, s => s.oldest_available().await)
    }
    async fn queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        each!(self, s => s.queues().await)
    }
    async fn lead(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.lead(name, holder, now, lease).await)
    }
    async fn resign(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        each!(self, s => s.resign(name, holder).await)
    }
    async fn leader(&self, name: &str) -> Result<Option<errand_core::Leader>, StoreError> {
        each!(self, s => s.leader(name).await)
    }
    async fn record_audit(
        &self,
        entry: &errand_core::NewAudit,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        each!(self, s => s.record_audit(entry, now).await)
    }
    async fn tally_finished(
        &self,
        upto: DateTime<Utc>,
        max_window: std::time::Duration,
    ) -> Result<u64, StoreError> {
        each!(self, s => s.tally_finished(upto, max_window).await)
    }
    async fn finished_per_minute(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<errand_core::MinuteCount>, StoreError> {
        each!(self, s => s.finished_per_minute(since).await)
    }
    async fn register_worker(&self, w: &errand_core::WorkerRecord) -> Result<(), StoreError> {
        each!(self, s => s.register_worker(w).await)
    }
    async fn deregister_worker(&self, id: &str) -> Result<(), StoreError> {
        each!(self, s => s.deregister_worker(id).await)
    }
    async fn workers(&self) -> Result<Vec<errand_core::WorkerRecord>, StoreError> {
        each!(self, s => s.workers().await)
    }
    async fn forget_workers(&self, silent_since: DateTime<Utc>) -> Result<u64, StoreError> {
        each!(self, s => s.forget_workers(silent_since).await)
    }
    async fn reclaim(&self, dead_rows: u64) -> Result<bool, StoreError> {
        each!(self, s => s.reclaim(dead_rows).await)
    }
    async fn audit_log(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<errand_core::AuditEntry>, StoreError> {
        each!(self, s => s.audit_log(limit, before).await)
    }
    async fn delete(&self, id: JobId) -> Result<DeleteResult, StoreError> {
        each!(self, s => s.delete(id).await)
    }
    async fn get(&self, id: JobId) -> Result<Option<JobRow>, StoreError> {
        each!(self, s => s.get(id).await)
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRow>, StoreError> {
        each!(self, s => s.list(filter).await)
    }
    async fn count(&self, filter: &ListFilter) -> Result<u64, StoreError> {
        each!(self, s => s.count(filter).await)
    }
    async fn count_up_to(&self, filter: &ListFilter, cap: u64) -> Result<u64, StoreError> {
        each!(self, s => s.count_up_to(filter, cap).await)
    }
    async fn state_counts_up_to(
        &self,
        state: JobState,
        cap: u64,
    ) -> Result<Vec<StateCount>, StoreError> {
        each!(self, s => s.state_counts_up_to(state, cap).await)
    }
    async fn stats(&self, states: &[JobState]) -> Result<Vec<StateCount>, StoreError> {
        each!(self, s => s.stats(states).await)
    }
    async fn prune(
        &self,
        state: JobState,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        each!(self, s => s.prune(state, before, limit).await)
    }
    async fn now(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        each!(self, s => s.now(local).await)
    }
    fn signals(&self) -> &QueueSignals {
        each!(self, s => s.signals())
    }
    fn listen(&self) {
        each!(self, s => s.listen())
    }
    fn hears_other_processes(&self) -> bool {
        each!(self, s => s.hears_other_processes())
    }
    fn poll_reports_changes(&self) -> bool {
        each!(self, s => s.poll_reports_changes())
    }
    fn detached(&self) -> Option<Arc<dyn Store>> {
        each!(self, s => s.detached())
    }
}
