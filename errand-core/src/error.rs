/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database rejected or could not run a statement (outage, lock timeout, I/O).
    /// Usually transient: the runtime retries with backoff.
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database refused the change itself: a value it cannot store or a violated
    /// constraint. Retrying the same call fails again; the runtime writes the other
    /// outcomes of a batch and leaves a refused one's job to the rescuer.
    #[error("the database refused the change: {0}")]
    Rejected(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database exists but its errand schema is missing or older than this build.
    #[error("the database {location} is not migrated (schema version {found}, this build needs {expected}): run `{migrate}` or open the store with migrations enabled")]
    NotMigrated {
        /// Where the database is.
        location: String,
        /// The command that migrates it (any password in it redacted as `***`).
        migrate: String,
        /// Version found (0 = none).
        found: i64,
        /// Version this build needs.
        expected: i64,
    },
    /// The database schema is newer than this build understands.
    #[error("the database {location} has schema version {found}, newer than this build's {expected}: upgrade errand")]
    TooNew {
        /// Where the database is.
        location: String,
        /// Version found.
        found: i64,
        /// Version this build needs.
        expected: i64,
    },
    /// The database does not exist.
    /// The message names the database and says how to create it.
    #[error("{0}")]
    Missing(String),
    /// The database URL cannot be used.
    #[error("invalid database url '{url}': {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database is gone from under the store (its file was deleted, replaced or
    /// truncated while open). Not transient: a worker that meets it stops
    /// ([`run_until`](https://docs.rs/errand) returns it) instead of running on.
    #[error("{0}")]
    Lost(String),
    /// A queue name errand cannot use (empty, over 128 bytes, or with control characters).
    #[error("invalid queue name '{queue}': {reason}")]
    InvalidQueue {
        /// The name as given (its first 128 characters).
        queue: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A Postgres schema name errand cannot use.
    #[error("invalid schema name '{schema}': {reason}")]
    InvalidSchema {
        /// The name as given.
        schema: String,
        /// What is allowed.
        reason: String,
    },
    /// A workflow that cannot be inserted as given (nothing was written).
    #[error(transparent)]
    Workflow(#[from] crate::WorkflowError),
    /// A stored row could not be read back (hand-edited or corrupt column).
    #[error("job {id} has a corrupt column: {reason}")]
    Corrupt {
        /// The job's id.
        id: i64,
        /// What could not be read.
        reason: String,
    },
}

impl StoreError {
    /// Wraps a driver error.
    pub fn database(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Database(Box::new(e))
    }

    /// Wraps a driver error that says the database refused the statement's data.
    pub fn rejected(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Rejected(Box::new(e))
    }

    /// `Ok` when the schema version `found` at `location` is the `expected` one; otherwise
    /// [`StoreError::NotMigrated`] (which suggests running `migrate`) or
    /// [`StoreError::TooNew`].
    pub fn check_version(
        location: String,
        migrate: String,
        found: i64,
        expected: i64,
    ) -> Result<(), StoreError> {
        match found.cmp(&expected) {
            std::cmp::Ordering::Less => Err(StoreError::NotMigrated {
                location,
                migrate,
                found,
                expected,
            }),
            std::cmp::Ordering::Greater => Err(StoreError::TooNew {
                location,
                found,
                expected,
            }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// A `state` column of job `id` (0 for aggregates) that names no state.
    pub fn parse_state(id: i64, text: &str) -> Result<crate::JobState, StoreError> {
        text.parse()
            .map_err(|e: crate::ParseStateError| StoreError::Corrupt {
                id,
                reason: e.to_string(),
            })
    }

    /// A JSON column of job `id` that does not parse.
    pub fn corrupt_json(id: i64, column: &str, e: serde_json::Error) -> Self {
        StoreError::Corrupt {
            id,
            reason: format!("column {column}: {e}"),
        }
    }

    /// Whether retrying the same call later may succeed (outages, busy databases, lock
    /// timeouts): [`StoreError::Database`]. A [`StoreError::Rejected`] change never will.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Database(_))
    }

    /// Whether the store cannot go on at all ([`StoreError::Lost`]): the worker stops.
    pub fn is_lost(&self) -> bool {
        matches!(self, StoreError::Lost(_))
    }
}
