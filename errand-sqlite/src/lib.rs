//! The SQLite store of errand: one file, no server, several processes may share it.
//!
//! Internal crate: use it through `errand` (feature `sqlite`, on by default), which re-exports
//! [`SqliteStore`].
//!
//! How it keeps the store contract on SQLite:
//! - WAL journal, `synchronous = NORMAL`, and a `busy_timeout` so writers from several
//!   processes queue up instead of failing;
//! - every write is one statement, or one `BEGIN IMMEDIATE` transaction that takes the write
//!   lock before reading, so two claimers (threads or processes) never see the same job;
//! - versioned migrations embedded in the binary, applied under the write lock.
//!
//! Where things are: `store.rs` opens the store (URL, pragmas, pool, the write turn);
//! `contract.rs` implements the `Store` trait, one line per operation, each in the file of its
//! area — `insert`, `claim`, `outcome`, `lease`, `schedule`, `cancel_retry`, `list`, `prune`
//! (the names of `errand-testkit`'s conformance cases and of the Postgres store's files);
//! `direct.rs` is the store's own write connection (rusqlite, on a thread of its own) that
//! inserts, claims and completions use; `sql.rs` holds what they share, `row.rs` decoding, `error.rs` error mapping, `tx.rs` the
//! application's transactions, `migrate.rs` the schema, `file.rs` the guard against a file
//! replaced underneath.
#![warn(missing_docs)]

mod audit;
mod cancel_retry;
mod claim;
mod contract;
mod direct;
mod error;
mod file;
mod insert;
mod leader;
mod lease;
mod list;
mod migrate;
mod outcome;
#[cfg(test)]
mod plans;
mod presence;
mod prune;
mod queue;
mod row;
mod schedule;
mod sql;
mod store;
mod tally;
mod tx;
mod url;
mod workflow;

pub use sqlx;
pub use sqlx::sqlite::{SqliteConnection, SqlitePool};
pub use store::{SqliteStore, SqliteStoreBuilder};
