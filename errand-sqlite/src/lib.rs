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
#![warn(missing_docs)]

mod file;
mod migrate;
mod queries;
mod row;
mod store;
mod tx;
mod url;

pub use sqlx;
pub use sqlx::sqlite::{SqliteConnection, SqlitePool};
pub use store::{SqliteStore, SqliteStoreBuilder};
