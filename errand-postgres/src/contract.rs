//! The [`Store`] contract on Postgres, one line per operation: each lives in the file named
//! after its area (the same names as `errand-testkit/src/cases/` and the SQLite store). Each
//! operation is one statement (its text in `sql.rs`, formatted once per schema).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errand_core::{
    CancelResult, ClaimRequest, DeleteResult, Finish, InsertResult, JobId, JobRow, JobState,
    LeaseRef, ListFilter, NewJob, Progress, PromoteReport, QueueLimits, QueueRecord, QueueSignals,
    RescueReport, StateCount, Store, StoreError,
};

use crate::store::PgStore;
use crate::{
    audit, cancel_retry, claim, insert, leader, lease, list, outcome, presence, prune, queue,
    reclaim, schedule, tally, workflow,
};

#[async_trait]
impl Store for PgStore {
    async fn insert(
        &self,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        insert::insert(self, jobs, now).await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError> {
        claim::claim(self, req).await
    }

    async fn finish(&self, batch: &[Finish]) -> Result<Vec<JobId>, StoreError> {
        outcome::finish(self, batch).await
    }

    async fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError> {
        lease::extend(self, leases, until).await
    }

    async fn release(&self, leases: &[LeaseRef], now: DateTime<Utc>) -> Result<u64, StoreError> {
        lease::release(self, leases, now).await
    }

    async fn set_progress(&self, lease: LeaseRef, progress: &Progress) -> Result<bool, StoreError> {
        outcome::set_progress(self, lease, progress).await
    }

    async fn watch_end(&self, id: JobId) -> Result<(), StoreError> {
        outcome::watch_end(self, id).await
    }

    async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<RescueReport, StoreError> {
        lease::rescue_expired(self, now, limit).await
    }

    async fn promote_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<PromoteReport, StoreError> {
        schedule::promote_due(self, now, limit).await
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelResult, StoreError> {
        cancel_retry::cancel(self, id, now).await
    }

    async fn retry_now(&self, id: JobId, now: DateTime<Utc>) -> Result<Option<JobRow>, StoreError> {
        cancel_retry::retry_now(self, id, now).await
    }

    async fn delete(&self, id: JobId) -> Result<DeleteResult, StoreError> {
        cancel_retry::delete(self, id).await
    }

    async fn insert_workflow(
        &self,
        wf: &errand_core::NewWorkflow,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError> {
        workflow::insert(self, wf, now).await
    }

    async fn workflow(&self, id: &str) -> Result<Option<errand_core::WorkflowRecord>, StoreError> {
        workflow::workflow(self, id).await
    }

    async fn workflows(
        &self,
        limit: u32,
        before: Option<&str>,
    ) -> Result<Vec<errand_core::WorkflowSummary>, StoreError> {
        workflow::workflows(self, limit, before).await
    }

    async fn cancel_workflow(&self, id: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        workflow::cancel(self, id, now).await
    }

    async fn job_step(&self, id: JobId) -> Result<Option<(String, String)>, StoreError> {
        workflow::job_step(self, id).await
    }

    async fn dependency_outputs(
        &self,
        id: JobId,
    ) -> Result<Vec<errand_core::DepOutput>, StoreError> {
        workflow::dependency_outputs(self, id).await
    }

    async fn set_queue_paused(
        &self,
        queue: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<QueueRecord, StoreError> {
        queue::set_paused(self, queue, paused, now).await
    }

    async fn set_queue_limits(
        &self,
        queue: &str,
        limits: &QueueLimits,
        now: DateTime<Utc>,
    ) -> Result<QueueRecord, StoreError> {
        queue::set_limits(self, queue, limits, now).await
    }

    async fn lead(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        leader::lead(self, name, holder, now, lease).await
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        leader::resign(self, name, holder).await
    }

    async fn leader(&self, name: &str) -> Result<Option<errand_core::Leader>, StoreError> {
        leader::leader(self, name).await
    }

    async fn record_audit(
        &self,
        entry: &errand_core::NewAudit,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        audit::record(self, entry, now).await
    }

    async fn tally_finished(
        &self,
        upto: DateTime<Utc>,
        max_window: std::time::Duration,
    ) -> Result<u64, StoreError> {
        tally::tally(self, upto, max_window).await
    }

    async fn finished_per_minute(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<errand_core::MinuteCount>, StoreError> {
        tally::per_minute(self, since).await
    }

    async fn register_worker(&self, w: &errand_core::WorkerRecord) -> Result<(), StoreError> {
        presence::register(self, w).await
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), StoreError> {
        presence::deregister(self, id).await
    }

    async fn workers(&self) -> Result<Vec<errand_core::WorkerRecord>, StoreError> {
        presence::list(self).await
    }

    async fn forget_workers(&self, silent_since: DateTime<Utc>) -> Result<u64, StoreError> {
        presence::forget(self, silent_since).await
    }
    async fn reclaim(&self, dead_rows: u64) -> Result<bool, StoreError> {
        reclaim::reclaim(self, dead_rows).await
    }

    async fn audit_log(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<errand_core::AuditEntry>, StoreError> {
        audit::log(self, limit, before).await
    }

    async fn queues_with_available(&self, queues: &[String]) -> Result<Vec<String>, StoreError> {
        queue::with_available(self, queues).await
    }

    async fn oldest_available(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        queue::oldest_available(self).await
    }

    async fn queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        queue::queues(self).await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRow>, StoreError> {
        list::fetch(self, id).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRow>, StoreError> {
        list::list(self, filter).await
    }

    async fn count(&self, filter: &ListFilter) -> Result<u64, StoreError> {
        list::count(self, filter).await
    }

    async fn count_up_to(&self, filter: &ListFilter, cap: u64) -> Result<u64, StoreError> {
        list::count_up_to(self, filter, cap).await
    }

    async fn state_counts_up_to(
        &self,
        state: JobState,
        cap: u64,
    ) -> Result<Vec<StateCount>, StoreError> {
        list::state_counts_up_to(self, state, cap).await
    }

    async fn stats(&self, states: &[JobState]) -> Result<Vec<StateCount>, StoreError> {
        list::stats(self, states).await
    }

    async fn prune(
        &self,
        state: JobState,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        prune::prune(self, state, before, limit).await
    }

    async fn now(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        self.inner.clock.now(&self.inner.pool, local).await
    }

    fn signals(&self) -> &QueueSignals {
        &self.inner.signals
    }

    fn listen(&self) {
        PgStore::listen(self);
    }

    fn hears_other_processes(&self) -> bool {
        self.inner.listener.get().is_some()
    }

    fn detached(&self) -> Option<std::sync::Arc<dyn Store>> {
        Some(std::sync::Arc::new(self.with_own_pool(3)))
    }
}
