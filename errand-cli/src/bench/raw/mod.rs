//! The raw baseline: the fastest correct queue we know how to write by hand on the same
//! database, with the driver an expert would pick for speed (tokio-postgres with prepared
//! statements; rusqlite with cached statements and no thread hop). It measures what the
//! database can do, against which errand is judged: a weaker baseline would flatter errand's
//! ratios. Each row carries what a multi-kind queue stores: a queue name and a JSON payload.

mod pg;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub(crate) use pg::PgRaw;
pub(crate) use sqlite::SqliteRaw;

use super::Probe;

/// Jobs claimed per statement.
const CLAIM: i64 = 100;
/// The queue the raw side's jobs are on.
const QUEUE: &str = "bench";

/// What the raw side fails with (its own drivers' errors; the bench reports them as text).
pub(crate) type RawError = Box<dyn std::error::Error + Send + Sync>;

/// The raw queue on one of the two databases.
#[derive(Debug, Clone)]
pub(crate) enum Raw {
    Pg(PgRaw),
    Sqlite(SqliteRaw),
}

/// A producer of the raw queue (Postgres: its own connection with prepared statements).
pub(crate) enum Producer {
    Pg(Box<pg::PgProducer>),
    Sqlite(SqliteRaw),
}

impl Raw {
    pub(crate) async fn setup(&self) -> Result<(), RawError> {
        match self {
            Raw::Pg(pg) => pg.setup().await,
            // Created when opened.
            Raw::Sqlite(_) => Ok(()),
        }
    }

    pub(crate) async fn clear(&self) -> Result<(), RawError> {
        match self {
            Raw::Pg(pg) => pg.clear().await,
            Raw::Sqlite(sq) => sq.clear(),
        }
    }

    pub(crate) async fn producer(&self) -> Result<Producer, RawError> {
        Ok(match self {
            Raw::Pg(pg) => Producer::Pg(Box::new(pg.producer().await?)),
            Raw::Sqlite(sq) => Producer::Sqlite(sq.clone()),
        })
    }

    /// `workers` claim, run (count) and mark done until every job of `probe` ran (SQLite: one
    /// connection does it all, see [`SqliteRaw`]).
    pub(crate) async fn process(
        &self,
        probe: &Arc<Probe>,
        workers: usize,
    ) -> Result<Duration, RawError> {
        match self {
            Raw::Pg(pg) => pg.process(probe, workers).await,
            Raw::Sqlite(sq) => sq.process(probe).await,
        }
    }

    /// Runs a consumer woken by inserts (Postgres `LISTEN`, SQLite in-process) until `stop`;
    /// `ready` is notified once it listens.
    pub(crate) async fn consume_until(
        &self,
        probe: Arc<Probe>,
        stop: Arc<Notify>,
        ready: Arc<Notify>,
    ) -> Result<(), RawError> {
        match self {
            Raw::Pg(pg) => pg.consume_until(probe, stop, ready).await,
            Raw::Sqlite(sq) => sq.consume_until(probe, stop, ready).await,
        }
    }
}

impl Producer {
    /// One job; `notify` wakes idle consumers in the same statement (Postgres: `NOTIFY`;
    /// SQLite always wakes them, in process, at no cost worth measuring).
    pub(crate) async fn insert_one(&self, seq: u32, notify: bool) -> Result<(), RawError> {
        match self {
            Producer::Pg(p) => p.insert_one(seq, notify).await,
            Producer::Sqlite(sq) => sq.insert_one(seq),
        }
    }

    /// A batch in one statement (Postgres: `unnest` of a `jsonb[]`, then one `NOTIFY`) or one
    /// transaction (SQLite: a cached insert stepped per row).
    pub(crate) async fn insert_many(&self, seqs: &[u32]) -> Result<(), RawError> {
        match self {
            Producer::Pg(p) => p.insert_many(seqs).await,
            Producer::Sqlite(sq) => sq.insert_many(seqs),
        }
    }

    /// A large batch by `COPY` (Postgres only: `None` on SQLite, whose batch insert is
    /// already one transaction of cached steps).
    pub(crate) async fn copy_many(&self, seqs: &[u32]) -> Option<Result<(), RawError>> {
        match self {
            Producer::Pg(p) => Some(p.copy_many(seqs).await),
            Producer::Sqlite(_) => None,
        }
    }
}
