//! Queues as stored objects: a record per queue that an operator has acted on, holding its
//! state (paused or not). A queue without a record is active.

use chrono::{DateTime, Utc};

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
