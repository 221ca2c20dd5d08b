//! What an operator can do to a job, one job at a time: the job page's buttons and the
//! bulk actions both go through [`apply`].

use errand::store::{CancelResult, DeleteResult};
use errand::{JobId, JobState};

use crate::app::App;

/// An action on jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobAction {
    Retry,
    Cancel,
    Delete,
}

impl JobAction {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "retry" => Some(JobAction::Retry),
            "cancel" => Some(JobAction::Cancel),
            "delete" => Some(JobAction::Delete),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobAction::Retry => "retry",
            JobAction::Cancel => "cancel",
            JobAction::Delete => "delete",
        }
    }

    /// The states a bulk action takes when the operator did not choose one: those it
    /// changes (a bulk retry leaves completed jobs alone unless asked by state).
    pub(crate) fn default_states(self) -> &'static [JobState] {
        use JobState::*;
        match self {
            JobAction::Retry => &[Scheduled, Retryable, Discarded, Cancelled],
            JobAction::Cancel => &[Scheduled, Available, Running, Retryable],
            JobAction::Delete => &[
                Scheduled, Available, Retryable, Completed, Discarded, Cancelled,
            ],
        }
    }

    pub(crate) fn past(self) -> &'static str {
        match self {
            JobAction::Retry => "retried",
            JobAction::Cancel => "cancelled",
            JobAction::Delete => "deleted",
        }
    }
}

/// What an action did to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    Done,
    /// Left as it was, and why (already final, running, gone).
    Skipped(String),
}

/// Applies `action` to job `id`.
pub(crate) async fn apply(app: &App, action: JobAction, id: JobId) -> Result<Applied, String> {
    let c = &app.client;
    let skipped = |why: String| Ok(Applied::Skipped(why));
    match action {
        JobAction::Retry => match c.retry(id).await.map_err(|e| e.to_string())? {
            Some(row) if row.state == JobState::Available => Ok(Applied::Done),
            Some(row) => skipped(format!("job {id} is {}", row.state)),
            None => skipped(format!("job {id} does not exist")),
        },
        JobAction::Cancel => match c.cancel(id).await.map_err(|e| e.to_string())? {
            CancelResult::Cancelled(_) => Ok(Applied::Done),
            CancelResult::AlreadyFinal(row) => {
                skipped(format!("job {id} was already {}", row.state))
            }
            CancelResult::NotFound => skipped(format!("job {id} does not exist")),
            _ => skipped(format!("job {id}: not cancelled")),
        },
        JobAction::Delete => match c.delete(id).await.map_err(|e| e.to_string())? {
            DeleteResult::Deleted(_) => Ok(Applied::Done),
            DeleteResult::Running(_) => skipped(format!("job {id} is running: cancel it first")),
            DeleteResult::NotFound => skipped(format!("job {id} does not exist")),
            _ => skipped(format!("job {id}: not deleted")),
        },
    }
}
