//! Type erasure: each registered [`Job`] type becomes one boxed handler keyed by its kind.
//! Nothing below the registry is generic over job types.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use errand_core::{JobRow, MAX_KIND_LEN};

use crate::context::Attempt;
use crate::{Job, JobContext, JobError, Outcome, WorkerError};
use errand_core::check_name;

pub(crate) type RunFuture = Pin<Box<dyn Future<Output = Result<Outcome, JobError>> + Send>>;

type StartFn =
    Box<dyn Fn(Arc<JobRow>, Arc<Attempt>) -> Result<RunFuture, serde_json::Error> + Send + Sync>;

/// Why a claimed job could not be started.
#[derive(Debug)]
pub(crate) enum StartError {
    /// No handler for the row's kind in this worker.
    UnknownKind,
    /// The payload does not deserialize into the registered type.
    BadPayload(serde_json::Error),
}

#[derive(Default)]
pub(crate) struct Registry {
    handlers: HashMap<&'static str, StartFn>,
    /// Each kind's [`Job::QUEUE`].
    queues: Vec<(&'static str, &'static str)>,
}

impl Registry {
    pub(crate) fn register<J: Job>(&mut self, state: J::State) -> Result<(), WorkerError> {
        check_name("kind", J::KIND, MAX_KIND_LEN).map_err(|reason| WorkerError::InvalidKind {
            kind: J::KIND,
            reason,
        })?;
        if self.handlers.contains_key(J::KIND) {
            return Err(WorkerError::DuplicateKind(J::KIND));
        }
        let start: StartFn = Box::new(move |row: Arc<JobRow>, attempt: Arc<Attempt>| {
            let job: J = serde_json::from_str(&row.args)?;
            let cx = JobContext::new(state.clone(), row, attempt);
            Ok(Box::pin(job.run(cx)) as RunFuture)
        });
        self.handlers.insert(J::KIND, start);
        self.queues.push((J::KIND, J::QUEUE));
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// Each registered kind with its type's default queue, in registration order.
    pub(crate) fn default_queues(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.queues.iter().copied()
    }

    pub(crate) fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }

    /// Decodes the row's payload and builds the future that runs it, sharing `attempt`
    /// with the job (its completion in a transaction, its progress).
    pub(crate) fn start(
        &self,
        row: Arc<JobRow>,
        attempt: Arc<Attempt>,
    ) -> Result<RunFuture, StartError> {
        let handler = self
            .handlers
            .get(row.kind.as_str())
            .ok_or(StartError::UnknownKind)?;
        handler(row, attempt).map_err(StartError::BadPayload)
    }
}
