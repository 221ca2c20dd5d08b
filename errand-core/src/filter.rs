use crate::{JobId, JobState};

/// Which jobs `list` and `count` return. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only these states (empty: all).
    pub states: Vec<JobState>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs carrying this tag.
    pub tag: Option<String>,
    /// Page size for `list` (0 means 100). Ignored by `count`.
    pub limit: u32,
    /// Keyset paging for `list`: only ids below this one.
    pub before_id: Option<JobId>,
    /// Keyset paging for `list`: only ids above this one.
    pub after_id: Option<JobId>,
    /// `list` in ascending id order (oldest first) instead of newest first.
    pub oldest_first: bool,
}

impl ListFilter {
    /// Matches every job.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restricts to one state (call again to add more).
    pub fn state(mut self, state: JobState) -> Self {
        self.states.push(state);
        self
    }

    /// Restricts to the states that are not final (scheduled, available, running,
    /// retryable): the jobs still to be done.
    pub fn unfinished(self) -> Self {
        crate::JobState::ALL
            .into_iter()
            .filter(|s| !s.is_final())
            .fold(self, |f, s| f.state(s))
    }

    /// Restricts to one queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Restricts to one kind.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Restricts to jobs carrying `tag`.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Sets the page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Continues a listing after the last id of the previous page.
    pub fn before(mut self, id: JobId) -> Self {
        self.before_id = Some(id);
        self
    }

    /// Lists oldest first (ascending ids); page on with [`ListFilter::after`].
    pub fn oldest_first(mut self) -> Self {
        self.oldest_first = true;
        self
    }

    /// Continues an oldest-first listing after the last id of the previous page.
    pub fn after(mut self, id: JobId) -> Self {
        self.after_id = Some(id);
        self
    }

    /// The page size to use.
    pub fn effective_limit(&self) -> u32 {
        if self.limit == 0 {
            100
        } else {
            self.limit
        }
    }

    /// Whether `row` passes the filter (ignoring paging); stores without SQL use it.
    pub fn matches(&self, row: &crate::JobRow) -> bool {
        (self.states.is_empty() || self.states.contains(&row.state))
            && self.queue.as_deref().is_none_or(|q| q == row.queue)
            && self.kind.as_deref().is_none_or(|k| k == row.kind)
            && self
                .tag
                .as_deref()
                .is_none_or(|t| row.tags.iter().any(|r| r == t))
    }
}

/// How many jobs of one queue are in one state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StateCount {
    /// Queue name.
    pub queue: String,
    /// State.
    pub state: JobState,
    /// Number of jobs.
    pub count: u64,
}

impl StateCount {
    /// `count` jobs of `queue` in `state`.
    pub fn new(queue: impl Into<String>, state: JobState, count: u64) -> Self {
        StateCount {
            queue: queue.into(),
            state,
            count,
        }
    }
}
