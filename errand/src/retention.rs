//! [`Retention`]: how long finished jobs are kept, per final state.

use std::time::Duration;

use errand_core::JobState;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long jobs are kept once final, per final state, before a worker's pruner deletes them
/// (in batches that never hold up claims for long). `None` keeps that state's jobs forever.
/// The defaults: completed 24 h, cancelled 24 h, discarded 7 days (failures are what an
/// operator comes back to look at).
///
/// ```
/// use std::time::Duration;
/// use errand::Retention;
/// let keep = Retention::default()
///     .completed(Some(Duration::from_secs(3600)))
///     .discarded(None); // keep failures until deleted by hand
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub(crate) completed: Option<Duration>,
    pub(crate) cancelled: Option<Duration>,
    pub(crate) discarded: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            completed: Some(DAY),
            cancelled: Some(DAY),
            discarded: Some(7 * DAY),
        }
    }
}

impl Retention {
    /// Keeps every final job forever (prune by hand: `errand prune`).
    pub fn forever() -> Self {
        Retention {
            completed: None,
            cancelled: None,
            discarded: None,
        }
    }

    /// The same retention for every final state.
    pub fn all(keep: Option<Duration>) -> Self {
        Retention {
            completed: keep,
            cancelled: keep,
            discarded: keep,
        }
    }

    /// How long completed jobs are kept.
    pub fn completed(mut self, keep: Option<Duration>) -> Self {
        self.completed = keep;
        self
    }

    /// How long cancelled jobs are kept.
    pub fn cancelled(mut self, keep: Option<Duration>) -> Self {
        self.cancelled = keep;
        self
    }

    /// How long discarded jobs are kept.
    pub fn discarded(mut self, keep: Option<Duration>) -> Self {
        self.discarded = keep;
        self
    }

    /// Each final state with its retention, the states kept forever left out.
    pub(crate) fn by_state(&self) -> Vec<(JobState, Duration)> {
        [
            (JobState::Completed, self.completed),
            (JobState::Cancelled, self.cancelled),
            (JobState::Discarded, self.discarded),
        ]
        .into_iter()
        .filter_map(|(s, keep)| keep.map(|k| (s, k)))
        .collect()
    }
}
