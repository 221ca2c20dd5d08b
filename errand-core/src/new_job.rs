use chrono::{DateTime, Utc};

use crate::{Backoff, JobId, JobRow, JobState, UniqueStates};

/// A job ready to be inserted: validated by the client, written as is by the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The job type's `Job::KIND`.
    pub kind: String,
    /// Queue it runs on.
    pub queue: String,
    /// Serialized job (JSON text).
    pub args: String,
    /// Lower runs first.
    pub priority: i16,
    /// Attempts allowed (≥ 1).
    pub max_attempts: i32,
    /// Earliest run time; a time after the insert's `now` makes the job `scheduled`.
    pub run_at: DateTime<Utc>,
    /// Labels.
    pub tags: Vec<String>,
    /// At most one job holding a given key exists: a job holds its key in the states
    /// `unique_states` names (every state that is not final, by default).
    pub unique_key: Option<String>,
    /// The states in which the job holds `unique_key`.
    pub unique_states: UniqueStates,
    /// How long after the job finished a final state in `unique_states` still holds the
    /// key, in milliseconds; `None`: as long as the job is kept.
    pub unique_for_ms: Option<i64>,
    /// Backoff overriding the job type's.
    pub backoff: Option<Backoff>,
    /// Timeout in milliseconds overriding the job type's.
    pub timeout_ms: Option<i64>,
    /// The job's partition: under its queue's per-key limit, at most that many jobs with
    /// the same key run at once, fleet-wide (see [`QueueLimits`](crate::QueueLimits)).
    pub partition_key: Option<String>,
}

impl NewJob {
    /// The state an insert at `now` writes: `scheduled` when it is due later, else
    /// `available`. Every store inserts by this rule.
    pub fn state_at(&self, now: DateTime<Utc>) -> JobState {
        if self.run_at > now {
            JobState::Scheduled
        } else {
            JobState::Available
        }
    }

    /// The row an insert at `now` writes for this job under `id`: in the state
    /// [`state_at`](Self::state_at) gives, not attempted yet, no error history.
    pub fn into_row(self, id: JobId, now: DateTime<Utc>) -> JobRow {
        JobRow {
            id,
            state: self.state_at(now),
            kind: self.kind,
            queue: self.queue,
            args: self.args,
            priority: self.priority,
            attempt: 0,
            max_attempts: self.max_attempts,
            run_at: self.run_at,
            created_at: now,
            attempted_at: None,
            finalized_at: None,
            lease_expires_at: None,
            attempted_by: None,
            errors: Vec::new(),
            tags: self.tags,
            unique_key: self.unique_key,
            unique_states: self.unique_states,
            unique_for_ms: self.unique_for_ms,
            backoff: self.backoff,
            timeout_ms: self.timeout_ms,
            partition_key: self.partition_key,
            result: None,
            progress: None,
            corrupt: None,
        }
    }
}

/// What happened to one job of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertResult {
    /// The new job's id, or the id of the job already holding its unique key.
    pub id: JobId,
    /// `false` when a job holding the same unique key already existed and nothing was
    /// written.
    pub inserted: bool,
}
