//! The worker registry: each worker process keeps a record of itself in the store (who it
//! is, what it serves, how busy it is, when it last said so), so operators see the fleet
//! from any process (`errand workers list`, the dashboard).

use chrono::{DateTime, Utc};

/// A worker that has not reported for this many of its presence intervals is shown as
/// silent (killed, frozen or cut off): 30 s with the default 10 s interval.
pub const SILENT_AFTER_INTERVALS: u32 = 3;

/// One queue a worker serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerQueue {
    /// The queue's name.
    pub name: String,
    /// How many of its jobs the worker runs at once.
    pub concurrency: u32,
}

/// A worker process as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WorkerRecord {
    /// The worker's id (`host:pid:random` unless set), as in `attempted_by`.
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The errand version it runs.
    pub version: String,
    /// The queues it serves.
    pub queues: Vec<WorkerQueue>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last reported (the store's clock).
    pub heartbeat_at: DateTime<Utc>,
    /// Jobs it held (claimed or running) then.
    pub running: u32,
    /// How often it reports (its `presence_interval`), in milliseconds.
    pub interval_ms: u64,
}

impl WorkerRecord {
    /// A record.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: impl Into<String>,
        host: impl Into<String>,
        pid: u32,
        version: impl Into<String>,
        queues: Vec<WorkerQueue>,
        started_at: DateTime<Utc>,
        heartbeat_at: DateTime<Utc>,
        running: u32,
        interval_ms: u64,
    ) -> Self {
        WorkerRecord {
            id: id.into(),
            host: host.into(),
            pid,
            version: version.into(),
            queues,
            started_at,
            heartbeat_at,
            running,
            interval_ms,
        }
    }

    /// Whether it reported within [`SILENT_AFTER_INTERVALS`] of its intervals before `now`.
    pub fn is_alive(&self, now: DateTime<Utc>) -> bool {
        let limit = self
            .interval_ms
            .saturating_mul(u64::from(SILENT_AFTER_INTERVALS));
        (now - self.heartbeat_at).num_milliseconds() < i64::try_from(limit).unwrap_or(i64::MAX)
    }

    /// The queues as stored (JSON text).
    pub fn queues_json(&self) -> String {
        serde_json::to_string(&self.queues).expect("queues serialize")
    }

    /// Queues read back from [`WorkerRecord::queues_json`]; unreadable text reads as none.
    pub fn parse_queues(json: &str) -> Vec<WorkerQueue> {
        serde_json::from_str(json).unwrap_or_default()
    }
}
