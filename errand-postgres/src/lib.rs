//! The PostgreSQL store of errand: any number of worker processes on any number of machines
//! share one database.
//!
//! Internal crate: use it through `errand` (feature `postgres`), which re-exports
//! [`PgStore`] and adds transactional enqueue to `Client<PgStore>`.
//!
//! How it keeps the store contract on Postgres:
//! - claims are one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING …`;
//! - outcomes, lease extensions and releases are one statement per batch (`unnest` arrays),
//!   each row fenced by `state = 'running' AND attempt = $n`;
//! - inserts `NOTIFY` in the same statement (delivered on commit); a `LISTEN` connection per
//!   process wakes the right producers and reconnects after a dropped connection;
//! - migrations are embedded, versioned per schema, and serialized by an advisory lock.
//!
//! Where things are: `store.rs` connects (URL, schema, pool, listener); `contract.rs`
//! implements the `Store` trait, one line per operation, each in the file of its area —
//! `insert`, `claim`, `outcome`, `lease`, `schedule`, `cancel_retry`, `list`, `prune` (the
//! names of `errand-testkit`'s conformance cases and of the SQLite store's files); `sql.rs`
//! holds every statement's text, `row.rs` decoding, `error.rs` error mapping, `tx.rs` the
//! application's transactions, `clock.rs` the database's time, `listener.rs` `LISTEN`.
//!
//! # Pool sizing
//!
//! The runtime holds a pool connection only for the length of one statement, never while a
//! job runs, so a worker with concurrency far above the pool size (200 jobs on 10
//! connections) does not deadlock: jobs that query the database wait their turn for a
//! connection. Size the pool for the jobs' own database work plus 2–3 for the runtime
//! (claims, outcomes, heartbeats); the `LISTEN` connection is separate and not taken from
//! the pool.
#![warn(missing_docs)]

mod audit;
mod cancel_retry;
mod claim;
mod claim_floor;
mod clock;
mod contract;
mod copy;
mod error;
mod insert;
mod lane;
mod leader;
mod lease;
mod list;
mod listener;
mod migrate;
mod outcome;
mod presence;
mod prune;
mod queue;
mod reclaim;
mod row;
mod schedule;
mod sql;
mod store;
mod tally;
#[doc(hidden)]
pub mod testing;
mod tx;
mod workflow;

pub use sqlx;
pub use sqlx::postgres::{PgConnection, PgPool};
pub use store::{PgStore, PgStoreBuilder};
