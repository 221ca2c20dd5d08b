//! The store contract of errand and the types every store speaks.
//!
//! This crate is an internal part of [errand](https://docs.rs/errand): applications use the
//! `errand` crate, which re-exports what they need. Store authors implement [`Store`] and run
//! the conformance suite in `errand-testkit` against it.
//!
//! It owns the data shapes (rows, new jobs, outcomes, filters), the [`Store`] trait and the
//! in-process wake-up signals. It must not know about job types, workers or timing policy:
//! every timestamp a store writes is passed in by the caller, so stores are deterministic and
//! tests never sleep to move time forward.
#![warn(missing_docs)]

mod audit;
mod backoff;
mod error;
mod filter;
mod finish;
mod leader;
mod metered;
mod new_job;
mod presence;
mod queue;
mod redact;
mod row;
mod signals;
mod state;
mod state_index;
mod store;
mod tally;
mod time;
mod unique;
mod workflow;

pub use audit::{AuditEntry, NewAudit, MAX_AUDIT_DETAIL, MAX_AUDIT_FIELD};
pub use backoff::Backoff;
pub use error::StoreError;
pub use filter::{ListFilter, StateCount};
pub use finish::{
    rescue_message, CancelResult, DeleteResult, Finish, FinishAction, FinishEffect, LeaseRef,
    PromoteReport, RescueReport,
};
pub use leader::{Leader, MAINTENANCE_LEADER};
pub use metered::{
    check_partition_key, claim_metered, Meter, MeteredQueue, MeteredSet, Take, KEY_BUCKETS_PRUNED,
    MAX_KEY_VISITS, MAX_PARTITION_KEY_LEN, UNKEYED_SCAN,
};
pub use new_job::{InsertResult, NewJob};
pub use presence::{WorkerQueue, WorkerRecord, SILENT_AFTER_INTERVALS};
pub use queue::{
    check_name, check_queue_limits, check_queue_name, QueueLimits, QueueRecord, RateLimit,
    MAX_LIMIT, MAX_RATE_PERIOD,
};
pub use redact::{redact_url, scrub, url_password};
pub use row::{ErrorRecord, JobId, JobRow, Progress, ResultTypeError, RowReader};
pub use signals::QueueSignals;
pub use state::{JobState, ParseStateError};
pub use state_index::{state_any, state_predicates, STATE_INDEX_GROUPS};
pub use store::{ClaimRequest, Store};
pub use tally::{minute_of, MinuteCount, TALLY_KEPT};
pub use time::{earlier, is_clamped, later, MAX_DELAY};
pub use unique::{unique_expired, UniqueStates, UNIQUE_HOLDS_SQL};
pub use workflow::{
    cancelled_by_message, check_workflow, plan_workflow, DepOutput, ExistingStep, NewStep,
    NewWorkflow, PlannedEdge, PlannedHold, PlannedStep, StepDep, StepEdge, WorkflowError,
    WorkflowPlan, WorkflowRecord, WorkflowStep, WorkflowSummary, MAX_STEP_LEN, MAX_WORKFLOW_EDGES,
    MAX_WORKFLOW_STEPS,
};

/// Longest queue name accepted (bytes).
pub const MAX_QUEUE_LEN: usize = 128;
/// Longest job kind accepted (bytes).
pub const MAX_KIND_LEN: usize = 128;
/// Longest unique key accepted (bytes): Postgres indexes keys up to about 2.7 KB, SQLite
/// any length; one limit keeps the stores alike.
pub const MAX_UNIQUE_KEY_LEN: usize = 1024;
/// Most tags a job may carry.
pub const MAX_TAGS: usize = 64;
/// Longest tag accepted (bytes).
pub const MAX_TAG_LEN: usize = 256;
/// Longest error message kept in a job's error history (bytes); longer ones are truncated.
pub const MAX_ERROR_LEN: usize = 16 * 1024;
/// Largest job result, in bytes of JSON: a result is a summary for whoever waits on the job
/// (counts, ids, a URL), not a way to move data; store big outputs elsewhere and return
/// where they are.
pub const MAX_RESULT_LEN: usize = 1024 * 1024;
/// Longest progress message, in bytes; a longer one is truncated.
pub const MAX_PROGRESS_MESSAGE_LEN: usize = 1024;
