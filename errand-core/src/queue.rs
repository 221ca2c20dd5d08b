//! Queues as stored objects: a record per queue that an operator has acted on, holding its
//! state (paused or not) and its limit. A queue without a record is active and unlimited.

use chrono::{DateTime, Utc};

use crate::{StoreError, MAX_QUEUE_LEN};

/// A queue's stored record (see [`Store::queues`](crate::Store::queues)).
///
/// `#[non_exhaustive]`: more limits will join these.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct QueueRecord {
    /// The queue's name.
    pub name: String,
    /// Paused: no worker starts a job of this queue; running jobs finish.
    pub paused: bool,
    /// At most this many of the queue's jobs running at once, across every worker and
    /// process (`None`: each worker's own concurrency is the only bound).
    pub max_running: Option<u32>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl QueueRecord {
    /// A record of `name`, unlimited.
    pub fn new(name: impl Into<String>, paused: bool, updated_at: DateTime<Utc>) -> Self {
        QueueRecord {
            name: name.into(),
            paused,
            max_running: None,
            updated_at,
        }
    }

    /// With a fleet-wide limit on running jobs.
    pub fn with_max_running(mut self, max_running: Option<u32>) -> Self {
        self.max_running = max_running;
        self
    }

    /// How many jobs a claim wanting `want` may take when `running` of the queue's jobs run.
    pub fn claimable(&self, want: u32, running: u64) -> u32 {
        match (self.paused, self.max_running) {
            (true, _) => 0,
            (false, None) => want,
            (false, Some(max)) => {
                u64::from(max).saturating_sub(running).min(u64::from(want)) as u32
            }
        }
    }
}

/// Checks a name (`what`: queue, kind…): 1–`max` bytes, not blank, no control characters.
/// The reason is a sentence naming the problem.
pub fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{what} name is empty"));
    }
    if name.len() > max {
        return Err(format!(
            "{what} name is {} bytes, over the {max}-byte limit",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} name {name:?} contains control characters"));
    }
    Ok(())
}

/// A queue name every store accepts in its queue records: [`check_name`] as a store error.
pub fn check_queue_name(queue: &str) -> Result<(), StoreError> {
    check_name("queue", queue, MAX_QUEUE_LEN).map_err(|reason| StoreError::InvalidQueue {
        queue: queue.chars().take(MAX_QUEUE_LEN).collect(),
        reason,
    })
}

/// A queue name and limit every store accepts: the name as [`check_queue_name`], and a
/// limit of at least one running job (`None` removes the limit).
pub fn check_queue_limit(queue: &str, max_running: Option<u32>) -> Result<(), StoreError> {
    check_queue_name(queue)?;
    if max_running == Some(0) {
        return Err(StoreError::InvalidQueue {
            queue: queue.to_owned(),
            reason: "a limit of 0 running jobs: use at least 1, or pause the queue".into(),
        });
    }
    Ok(())
}
