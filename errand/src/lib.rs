#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod any_store;
mod client;
mod client_tx;
mod client_wait;
mod clock;
mod connect;
mod context;
mod error;
mod inline;
mod job;
mod maintenance;
mod memory;
mod options;
mod payload;
mod retention;
mod signal;
mod telemetry;
pub mod testing;
mod unique;
mod worker;
mod workflow;

pub use any_store::AnyStore;
/// The `chrono` errand's API takes times from (`JobOptions::run_at`): use this one, so
/// versions cannot drift.
pub use chrono;
pub use client::{Batch, Client, Enqueued, DEFAULT_MAX_PAYLOAD_BYTES};
pub use client_tx::TxStore;
pub use connect::{connect, AnyStoreBuilder};
pub use context::{JobContext, PROGRESS_INTERVAL};
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
pub use errand_postgres::sqlx;
/// The `sqlx` errand's stores are built on (the connections `enqueue_tx` takes, the pools):
/// use this one, so versions cannot drift.
#[cfg(feature = "sqlite")]
pub use errand_sqlite::sqlx;
pub use error::{EnqueueError, JobError, ResultError, StoreError, WorkerError};
pub use job::{Job, JobResult, Outcome, Produces};
pub use memory::MemoryStore;
pub use options::{JobOptions, DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, MAX_ATTEMPTS_LIMIT};
pub use payload::MAX_PAYLOAD_DEPTH;
pub use retention::Retention;
pub use signal::shutdown_signal;
pub use telemetry::describe_metrics;
pub use unique::Unique;
pub use worker::{DrainReport, QueueOptions, ShutdownReport, Worker, WorkerBuilder, WorkerHandle};
pub use workflow::{BatchCounts, Dep, EnqueuedWorkflow, OutputError, Workflow};

pub use errand_core::{
    AuditEntry, Backoff, CancelResult, DeleteResult, ErrorRecord, JobId, JobRow, JobState, Leader,
    ListFilter, NewAudit, Progress, QueueLimits, QueueRecord, RateLimit, ResultTypeError,
    StateCount, WorkerQueue, WorkerRecord, MAINTENANCE_LEADER, MAX_PARTITION_KEY_LEN,
    MAX_RESULT_LEN,
};
pub use errand_core::{
    DepOutput, StepEdge, WorkflowError, WorkflowRecord, WorkflowStep, WorkflowSummary,
    MAX_STEP_LEN, MAX_WORKFLOW_EDGES, MAX_WORKFLOW_STEPS,
};

#[cfg(feature = "sqlite")]
pub use errand_sqlite::{SqliteConnection, SqlitePool, SqliteStore, SqliteStoreBuilder};

#[cfg(feature = "postgres")]
pub use errand_postgres::{PgConnection, PgPool, PgStore, PgStoreBuilder};

/// Internals exposed for errand's own criterion benchmarks; not part of the API.
#[doc(hidden)]
pub mod bench_support {
    use std::sync::Arc;

    /// The registry, as the runtime uses it.
    #[derive(Default)]
    pub struct Dispatcher(crate::worker::Registry);

    impl Dispatcher {
        /// Registers `J`.
        pub fn register<J: crate::Job>(&mut self, state: J::State) {
            self.0.register::<J>(state).expect("valid kind");
        }

        /// Decodes the row's payload and builds its run future (not polled).
        pub fn start(&self, row: Arc<crate::JobRow>) -> bool {
            self.0.start(row, Arc::default()).is_ok()
        }
    }
}

/// The store contract: the [`Store`](store::Store) trait every store implements (name it in
/// generic code: `fn f<S: errand::store::Store>`), its request and result types, and the
/// helpers store authors share (see `errand-testkit` for the conformance suite a store must
/// pass). Applications mostly use the [`Client`] instead.
pub mod store {
    pub use errand_core::*;
}
