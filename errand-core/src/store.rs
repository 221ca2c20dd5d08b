use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    CancelResult, DeleteResult, Finish, InsertResult, JobId, JobRow, JobState, LeaseRef,
    ListFilter, NewJob, Progress, PromoteReport, QueueLimits, QueueRecord, QueueSignals,
    RescueReport, StateCount, StoreError,
};

/// One producer's request for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Queue to claim from.
    pub queue: String,
    /// At most this many jobs.
    pub limit: u32,
    /// Recorded as `attempted_by`.
    pub worker_id: String,
    /// Claim time: becomes `attempted_at`.
    pub now: DateTime<Utc>,
    /// Lease length: `lease_expires_at = now + lease`.
    pub lease: Duration,
    /// What the claiming worker holds of the queue, when it knows: jobs it runs or has
    /// claimed and not started yet. Under a queue-wide limit the store then counts as
    /// running the other workers' running jobs plus this, so this worker's finished jobs
    /// whose outcomes are still being written do not hold slots (they are done). A worker's
    /// hold only shrinks until its next claim, so counting it before the claim never lets
    /// more run than the limit. `None`: every running job of the queue counts.
    pub held: Option<u32>,
}

/// The contract every errand store keeps: nothing enqueued is lost, a job runs again only
/// when its worker died or lost its lease, and a bad row affects only itself.
///
/// Stores take every timestamp from the caller (who reads it from [`Store::now`], so a store
/// shared by machines judges leases and schedules by one clock) and apply every change to a
/// running job only where `state = 'running' AND attempt = $attempt` still holds (fencing). `errand-testkit`
/// holds the conformance suite that pins this contract down; a store is correct when it passes
/// all of it. Object-safe: the runtime holds an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts jobs in one round trip, in order. A job whose `unique_key` is held by a
    /// non-final job is not written; its result carries the holder's id and `inserted: false`.
    /// Jobs with `run_at` after `now` are `scheduled`, the others `available`.
    async fn insert(
        &self,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertResult>, StoreError>;

    /// Atomically claims up to `limit` available jobs of a queue, in (priority, run_at, id)
    /// order: sets `running`, `attempt + 1`, `attempted_at`, `attempted_by` and the lease.
    /// Two concurrent claims never return the same job. A paused queue's claim returns none;
    /// a limited one's at most its free slots ([`Store::set_queue_limits`]).
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError>;

    /// Records the ends of attempts in one batch, each fenced by its [`LeaseRef`].
    /// Returns the ids whose change was applied; the others had lost their lease. A
    /// completion with a result stores it ([`JobRow::result`]); jobs made final wake
    /// [`QueueSignals::ended`].
    ///
    /// Fires the wake-ups its changes cause, like every operation that makes jobs due: the
    /// queue of each job made `available` (a retry due at once) and the scheduler for jobs
    /// made `scheduled` or `retryable` for later — in this process through
    /// [`Store::signals`], and to other processes where the store can reach them (Postgres
    /// `NOTIFY`).
    async fn finish(&self, batch: &[Finish]) -> Result<Vec<JobId>, StoreError>;

    /// Extends the leases of running attempts to `until`. Returns the ids still held; a
    /// missing id was rescued, cancelled or finished elsewhere, and its worker should stop it.
    async fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError>;

    /// Stores `progress` on a running job, fenced by `lease`. Returns whether it was
    /// stored (false: the attempt no longer holds the job).
    async fn set_progress(&self, lease: LeaseRef, progress: &Progress) -> Result<bool, StoreError>;

    /// Asks to hear when job `id` ends even if it ends in another process: a store shared
    /// by processes marks the job so that recording its end wakes [`QueueSignals::ended`]
    /// everywhere (Postgres: `NOTIFY`, only for jobs someone waits on). The default does
    /// nothing: a store without other processes to hear fires it in process already.
    async fn watch_end(&self, id: JobId) -> Result<(), StoreError> {
        let _ = id;
        Ok(())
    }

    /// Returns running attempts to `available` without charging the attempt (graceful
    /// shutdown). Returns how many were released.
    async fn release(&self, leases: &[LeaseRef], now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Jobs running with a lease that expired before `now` (their worker died): `retryable`
    /// at `now` with an error recorded, or `discarded` when out of attempts.
    async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<RescueReport, StoreError>;

    /// `scheduled` and `retryable` jobs whose `run_at` is not after `now` become `available`,
    /// and their queues are woken. The report says when the next one is due.
    async fn promote_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<PromoteReport, StoreError>;

    /// Cancels a job that is not final. A running attempt's later outcome is ignored.
    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelResult, StoreError>;

    /// Makes a job that is not running `available` at `now`, granting one more attempt when
    /// its attempts are used up. Returns the job as it now is; `None` when no such job exists.
    /// A running or pending job is returned unchanged. A workflow step whose dependencies
    /// have not all settled goes back to `pending` instead; a failed job's dependents that
    /// its failure cancelled wait for it again.
    async fn retry_now(&self, id: JobId, now: DateTime<Utc>) -> Result<Option<JobRow>, StoreError>;

    /// Inserts the steps of a workflow at `now`, all or none: a new workflow, or steps added
    /// to an existing one whose steps they may depend on (a running step fanning out). Checks
    /// it ([`check_workflow`](crate::check_workflow)), locks the existing steps depended on,
    /// allocates ids and writes what [`plan_workflow`](crate::plan_workflow) says. Returns
    /// the new jobs' ids in `wf.steps` order. Wakes the queues of steps made available.
    ///
    /// From then on, recording a step's outcome settles its dependents in the same statement
    /// or transaction: a completion decrements each dependent's `waiting_on` and makes the
    /// step that reaches 0 `available` (or `scheduled` when its `run_at` is later) exactly
    /// once; a discard or cancel cancels the dependents on edges without `ignore_failure`
    /// (recorded in their errors, cascading) and settles the others; a hand retry of a
    /// failed job revives the dependents it cancelled.
    async fn insert_workflow(
        &self,
        wf: &crate::NewWorkflow,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError>;

    /// A workflow and every step of it, by job id; `None` when no such workflow exists.
    async fn workflow(&self, id: &str) -> Result<Option<crate::WorkflowRecord>, StoreError>;

    /// Workflows newest first, with their counts per state: up to `limit` (0 means 50),
    /// created before the workflow `before` when given (keyset paging).
    async fn workflows(
        &self,
        limit: u32,
        before: Option<&str>,
    ) -> Result<Vec<crate::WorkflowSummary>, StoreError>;

    /// Cancels every job of workflow `id` that is not final, at `now`. Returns how many.
    async fn cancel_workflow(&self, id: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The workflow and step name of job `id`, when it is a workflow step.
    async fn job_step(&self, id: JobId) -> Result<Option<(String, String)>, StoreError>;

    /// The dependencies of job `id` with their kinds, states and results, by step name.
    async fn dependency_outputs(&self, id: JobId) -> Result<Vec<crate::DepOutput>, StoreError>;

    /// Pauses or resumes `queue` at `now`, creating its record on first use, and returns
    /// the record. A paused queue's jobs are not claimed (running ones finish); the store
    /// wakes every worker's queue watcher, in every process it can reach (Postgres:
    /// `NOTIFY`), and on resume the queue's producers.
    async fn set_queue_paused(
        &self,
        queue: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<QueueRecord, StoreError>;

    /// Sets `queue`'s fleet-wide limits at `now` (replacing all it had; `None` fields: no
    /// such limit), creating its record on first use, and returns the record. Claims then
    /// keep to them atomically: two claims at once never both take the last slot, a key's
    /// last slot or the last token (see [`claim_metered`](crate::claim_metered)). Slots come
    /// back as jobs end, are rescued or released. A changed rate starts with full buckets;
    /// the walk over the keys starts afresh. Wakes every worker's queue watcher and the
    /// queue's producers.
    async fn set_queue_limits(
        &self,
        queue: &str,
        limits: &QueueLimits,
        now: DateTime<Utc>,
    ) -> Result<QueueRecord, StoreError>;

    /// For each queue with available jobs, the earliest `run_at` among them: the oldest
    /// waiting job's due time, from which an operator reads the queue's lag. Reads the
    /// available jobs' index only.
    async fn oldest_available(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;

    /// Which of `queues` have an available job: one index probe per queue, in one statement.
    /// A worker polls its queues with it (one query per poll interval whatever their number)
    /// and wakes the producers of those with work.
    async fn queues_with_available(&self, queues: &[String]) -> Result<Vec<String>, StoreError>;

    /// Every queue record, by name. A queue nobody paused or limited may have none.
    async fn queues(&self) -> Result<Vec<QueueRecord>, StoreError>;

    /// Removes a job that is not running (a running one is left alone: cancel it first, so
    /// its worker stops). A unique key it held is free again.
    async fn delete(&self, id: JobId) -> Result<DeleteResult, StoreError>;

    /// One job by id.
    async fn get(&self, id: JobId) -> Result<Option<JobRow>, StoreError>;

    /// A page of jobs matching `filter`, newest (highest id) first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRow>, StoreError>;

    /// How many jobs match `filter` (paging ignored).
    async fn count(&self, filter: &ListFilter) -> Result<u64, StoreError>;

    /// How many jobs match `filter`, counting no further than `cap`: the number when it is
    /// `cap` or fewer, `cap + 1` when there are more. Reads at most `cap + 1` matching rows,
    /// so it stays cheap on a table of millions where [`Store::count`] scans them all.
    async fn count_up_to(&self, filter: &ListFilter, cap: u64) -> Result<u64, StoreError>;

    /// [`Store::stats`] for one state, reading at most `cap + 1` of its jobs: the counts are
    /// exact when they add up to `cap` or less, lower bounds when they add up to `cap + 1`.
    async fn state_counts_up_to(
        &self,
        state: JobState,
        cap: u64,
    ) -> Result<Vec<StateCount>, StoreError>;

    /// Job counts by queue and state (only non-zero counts), for the given states (empty:
    /// every state). Asking for the non-final states only stays cheap on tables holding
    /// millions of finished jobs.
    async fn stats(&self, states: &[JobState]) -> Result<Vec<StateCount>, StoreError>;

    /// Deletes up to `limit` jobs in the final `state` finalized before `before`, oldest
    /// first (each final state has its own retention). Returns how many. A state that is not
    /// final prunes nothing.
    async fn prune(
        &self,
        state: JobState,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;

    /// Takes or keeps the leadership lease `name` for `holder` until `now + lease`, and says
    /// whether `holder` holds it after the call. The lease is free when no one holds it or
    /// its holder's lease ended before `now`; only its holder can renew it. Atomic: of
    /// workers racing for a free lease, one wins. `now` comes from [`Store::now`], so every
    /// worker judges expiry by the same clock.
    async fn lead(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError>;

    /// Gives the lease `name` up if `holder` holds it (a worker shutting down), so another
    /// worker takes it at its next try instead of after the lease.
    async fn resign(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Who holds the lease `name` and until when; a lease that ended is still reported.
    async fn leader(&self, name: &str) -> Result<Option<crate::Leader>, StoreError>;

    /// Records an operator's action in the audit log at `now` and returns its id (ids
    /// increase with every entry).
    async fn record_audit(
        &self,
        entry: &crate::NewAudit,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError>;

    /// The audit log, newest first: up to `limit` entries (0 means 100) with ids below
    /// `before` when given (keyset paging).
    async fn audit_log(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<crate::AuditEntry>, StoreError>;

    /// Inserts or replaces the record of worker `w.id` (a worker calls it at start and
    /// then as its presence heartbeat).
    async fn register_worker(&self, w: &crate::WorkerRecord) -> Result<(), StoreError>;

    /// Removes the record of worker `id` (a worker shutting down).
    async fn deregister_worker(&self, id: &str) -> Result<(), StoreError>;

    /// Every worker record, oldest started first.
    async fn workers(&self) -> Result<Vec<crate::WorkerRecord>, StoreError>;

    /// Removes the records of workers silent since before `silent_since` (killed without
    /// shutting down); how many.
    async fn forget_workers(&self, silent_since: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Adds to the per-minute counts of finished jobs (see [`crate::MinuteCount`]) the jobs
    /// that reached a final state after the store's tally mark and at or before `upto`,
    /// then moves the mark to `upto` and drops counts older than [`crate::TALLY_KEPT`].
    /// Without a mark, or with one older than `max_window`, it counts from
    /// `upto - max_window`. Atomic: callers racing count each interval once. Returns how
    /// many jobs it counted.
    async fn tally_finished(
        &self,
        upto: DateTime<Utc>,
        max_window: std::time::Duration,
    ) -> Result<u64, StoreError>;

    /// The per-minute counts of finished jobs from `since` on, oldest minute first.
    async fn finished_per_minute(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<crate::MinuteCount>, StoreError>;

    /// The time by which this store judges leases and schedules, given the caller's clock
    /// `local`. The runtime and the client take every timestamp they pass to the store
    /// from here. A store on one machine (SQLite, memory) answers `local`; a store shared by
    /// machines (Postgres) answers with the database's clock, so a worker whose own clock
    /// is wrong can neither take running jobs from healthy workers nor start scheduled jobs
    /// early.
    async fn now(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        local
    }

    /// Housekeeping the database does not do soon enough by itself, run by the maintenance
    /// leader every few seconds: on Postgres, a `VACUUM` of the jobs table once it holds
    /// more than `dead_rows` dead row versions (autovacuum visits a database once a minute,
    /// and a queue running 800 jobs/s leaves 96,000 dead versions in that minute, which the
    /// claims and outcomes then step over). Returns whether it did anything; the other stores
    /// need nothing.
    async fn reclaim(&self, dead_rows: u64) -> Result<bool, StoreError> {
        let _ = dead_rows;
        Ok(false)
    }

    /// The in-process wake-ups this store fires when jobs become available.
    fn signals(&self) -> &QueueSignals;

    /// Called when a worker starts: a store that can hear about jobs made available by other
    /// processes (Postgres `LISTEN`) starts feeding them into [`Store::signals`]. Idempotent.
    fn listen(&self) {}

    /// Whether [`Store::signals`] also fires for jobs inserted by other processes (true for
    /// the in-memory store, which has no other processes, and for Postgres with `LISTEN`).
    /// When false, the runtime polls more often for work it would not hear about.
    fn hears_other_processes(&self) -> bool {
        false
    }

    /// Whether [`Store::queues_with_available`] also notices what other processes changed
    /// since the last call — a queue record (paused, resumed, limited) or a scheduled or
    /// retryable job come due — and fires [`Store::signals`] for it (`notify_controls`,
    /// `notify_scheduled`). A worker's one poll then stands in for the queue watcher's and
    /// the scheduler's own, which poll only as a fallback. SQLite does this; a store that
    /// hears other processes needs not.
    fn poll_reports_changes(&self) -> bool {
        false
    }

    /// A handle on the same database for use on another tokio runtime, opened on the
    /// runtime that calls this (the worker's keeper thread, which runs heartbeats and
    /// writes outcomes away from the application's runtime so blocking job code cannot
    /// starve them). `None` (the default) when this handle works from any runtime: its
    /// I/O belongs to no runtime (SQLite's connection threads, the in-memory store). A store
    /// whose sockets are registered with the runtime that opened them (Postgres) returns a
    /// handle with connections of its own, sharing [`Store::signals`].
    fn detached(&self) -> Option<std::sync::Arc<dyn Store>> {
        None
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    async fn insert(
        &self,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        (**self).insert(jobs, now).await
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRow>, StoreError> {
        (**self).claim(req).await
    }
    async fn finish(&self, batch: &[Finish]) -> Result<Vec<JobId>, StoreError> {
        (**self).finish(batch).await
    }
    async fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError> {
        (**self).extend_leases(leases, until).await
    }
    async fn release(&self, leases: &[LeaseRef], now: DateTime<Utc>) -> Result<u64, StoreError> {
        (**self).release(leases, now).await
    }
    async fn set_progress(&self, lease: LeaseRef, progress: &Progress) -> Result<bool, StoreError> {
        (**self).set_progress(lease, progress).await
    }
    async fn watch_end(&self, id: JobId) -> Result<(), StoreError> {
        (**self).watch_end(id).await
    }
    async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<RescueReport, StoreError> {
        (**self).rescue_expired(now, limit).await
    }
    async fn promote_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<PromoteReport, StoreError> {
        (**self).promote_due(now, limit).await
    }
    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelResult, StoreError> {
        (**self).cancel(id, now).await
    }
    async fn retry_now(&self, id: JobId, now: DateTime<Utc>) -> Result<Option<JobRow>, StoreError> {
        (**self).retry_now(id, now).await
    }
    async fn insert_workflow(
        &self,
        wf: &crate::NewWorkflow,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>, StoreError> {
        (**self).insert_workflow(wf, now).await
    }
    async fn workflow(&self, id: &str) -> Result<Option<crate::WorkflowRecord>, StoreError> {
        (**self).workflow(id).await
    }
    async fn workflows(
        &self,
        limit: u32,
        before: Option<&str>,
    ) -> Result<Vec<crate::WorkflowSummary>, StoreError> {
        (**self).workflows(limit, before).await
    }
    async fn cancel_workflow(&self, id: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        (**self).cancel_workflow(id, now).await
    }
    async fn job_step(&self, id: JobId) -> Result<Option<(String, String)>, StoreError> {
        (**self).job_step(id).await
    }
    async fn dependency_outputs(&self, id: JobId) -> Result<Vec<crate::DepOutput>, StoreError> {
        (**self).dependency_outputs(id).await
    }
    async fn delete(&self, id: JobId) -> Result<DeleteResult, StoreError> {
        (**self).delete(id).await
    }
    async fn set_queue_paused(
        &self,
        queue: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<QueueRecord, StoreError> {
        (**self).set_queue_paused(queue, paused, now).await
    }
    async fn set_queue_limits(
        &self,
        queue: &str,
        limits: &QueueLimits,
        now: DateTime<Utc>,
    ) -> Result<QueueRecord, StoreError> {
        (**self).set_queue_limits(queue, limits, now).await
    }
    async fn queues_with_available(&self, queues: &[String]) -> Result<Vec<String>, StoreError> {
        (**self).queues_with_available(queues).await
    }
    async fn oldest_available(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        (**self).oldest_available().await
    }
    async fn queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        (**self).queues().await
    }
    async fn get(&self, id: JobId) -> Result<Option<JobRow>, StoreError> {
        (**self).get(id).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRow>, StoreError> {
        (**self).list(filter).await
    }
    async fn count(&self, filter: &ListFilter) -> Result<u64, StoreError> {
        (**self).count(filter).await
    }
    async fn stats(&self, states: &[JobState]) -> Result<Vec<StateCount>, StoreError> {
        (**self).stats(states).await
    }
    async fn count_up_to(&self, filter: &ListFilter, cap: u64) -> Result<u64, StoreError> {
        (**self).count_up_to(filter, cap).await
    }
    async fn state_counts_up_to(
        &self,
        state: JobState,
        cap: u64,
    ) -> Result<Vec<StateCount>, StoreError> {
        (**self).state_counts_up_to(state, cap).await
    }
    async fn prune(
        &self,
        state: JobState,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        (**self).prune(state, before, limit).await
    }
    async fn now(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        (**self).now(local).await
    }
    async fn reclaim(&self, dead_rows: u64) -> Result<bool, StoreError> {
        (**self).reclaim(dead_rows).await
    }
    async fn lead(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        (**self).lead(name, holder, now, lease).await
    }
    async fn resign(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        (**self).resign(name, holder).await
    }
    async fn leader(&self, name: &str) -> Result<Option<crate::Leader>, StoreError> {
        (**self).leader(name).await
    }
    async fn record_audit(
        &self,
        entry: &crate::NewAudit,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        (**self).record_audit(entry, now).await
    }
    async fn register_worker(&self, w: &crate::WorkerRecord) -> Result<(), StoreError> {
        (**self).register_worker(w).await
    }
    async fn tally_finished(
        &self,
        upto: DateTime<Utc>,
        max_window: std::time::Duration,
    ) -> Result<u64, StoreError> {
        (**self).tally_finished(upto, max_window).await
    }
    async fn finished_per_minute(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<crate::MinuteCount>, StoreError> {
        (**self).finished_per_minute(since).await
    }
    async fn deregister_worker(&self, id: &str) -> Result<(), StoreError> {
        (**self).deregister_worker(id).await
    }
    async fn workers(&self) -> Result<Vec<crate::WorkerRecord>, StoreError> {
        (**self).workers().await
    }
    async fn forget_workers(&self, silent_since: DateTime<Utc>) -> Result<u64, StoreError> {
        (**self).forget_workers(silent_since).await
    }
    async fn audit_log(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<crate::AuditEntry>, StoreError> {
        (**self).audit_log(limit, before).await
    }
    fn signals(&self) -> &QueueSignals {
        (**self).signals()
    }
    fn listen(&self) {
        (**self).listen()
    }
    fn hears_other_processes(&self) -> bool {
        (**self).hears_other_processes()
    }
    fn poll_reports_changes(&self) -> bool {
        (**self).poll_reports_changes()
    }
    fn detached(&self) -> Option<std::sync::Arc<dyn Store>> {
        (**self).detached()
    }
}
