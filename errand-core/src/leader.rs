//! Leadership: one worker per store runs the maintenance that needs one runner.

use chrono::{DateTime, Utc};

/// The lease the workers of a store compete for: its holder runs the scheduler, the
/// rescuer, the pruner and the stats gauges for everyone.
pub const MAINTENANCE_LEADER: &str = "maintenance";

/// Who holds a leadership lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Leader {
    /// The lease's name ([`MAINTENANCE_LEADER`]).
    pub name: String,
    /// The holder's worker id (`host:pid:random` unless set).
    pub holder: String,
    /// When this holder took the lease (kept across renewals).
    pub elected_at: DateTime<Utc>,
    /// When the lease ends unless renewed: after it, any worker may take it.
    pub expires_at: DateTime<Utc>,
}

impl Leader {
    /// A lease record.
    pub fn new(
        name: impl Into<String>,
        holder: impl Into<String>,
        elected_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Leader {
            name: name.into(),
            holder: holder.into(),
            elected_at,
            expires_at,
        }
    }
}
