use std::process::ExitCode;

/// What a command can fail with; the message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The store could not be opened or failed.
    #[error(transparent)]
    Store(#[from] errand::StoreError),
    /// No job has that id.
    #[error("no job with id {0}: list jobs with `errand jobs list`")]
    NotFound(i64),
    /// No workflow has that id.
    #[error("no workflow '{0}': list workflows with `errand workflows list`")]
    NoWorkflow(String),
    /// The operation does not apply to the job in its current state.
    #[error("{0}")]
    Refused(String),
    /// Writing output failed.
    #[error("could not write output: {0}")]
    Io(#[from] std::io::Error),
    /// A worker could not be built.
    #[error(transparent)]
    Worker(#[from] errand::WorkerError),
    /// An enqueue failed.
    #[error(transparent)]
    Enqueue(#[from] errand::EnqueueError),
    /// The dashboard could not be served (an open address without authentication, a port
    /// in use).
    #[error(transparent)]
    Dashboard(#[from] errand_web::ServeError),
    /// The dashboard's settings in the environment are unusable.
    #[error(transparent)]
    DashboardConfig(#[from] errand_web::ConfigError),
    /// `errand bench`'s raw baseline failed (its own driver's error).
    #[error("the bench's raw baseline failed: {0}")]
    Baseline(String),
}

impl CliError {
    /// 2 for problems with the invocation or the database's setup, 1 for the rest.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Store(
                errand::StoreError::InvalidUrl { .. }
                | errand::StoreError::InvalidSchema { .. }
                | errand::StoreError::InvalidQueue { .. }
                | errand::StoreError::Missing(_)
                | errand::StoreError::NotMigrated { .. }
                | errand::StoreError::TooNew { .. },
            )
            | CliError::Dashboard(errand_web::ServeError::OpenWithoutAuth { .. })
            | CliError::DashboardConfig(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}
