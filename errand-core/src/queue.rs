//! Queues as stored objects: a record per queue that an operator has acted on, holding its
//! state (paused or not). A queue without a record is active.

use chrono::{DateTime, Utc};

use crate::{StoreError, MAX_QUEUE_LEN};

/// A queue's stored record (see [`Store::queues`](crate::Store::queues)).
///
/// `#[non_exhaustive]`: limits will join the state here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct QueueRecord {
    /// The queue's name.
    pub name: String,
    /// Paused: no worker starts a job of this queue; running jobs finish.
    pub paused: bool,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl QueueRecord {
    /// A record of `name`.
    pub fn new(name: impl Into<String>, paused: bool, updated_at: DateTime<Utc>) -> Self {
        QueueRecord {
            name: name.into(),
            paused,
            updated_at,
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
