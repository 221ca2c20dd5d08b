//! The SQLite raw queue on rusqlite: one connection owned by the queue (WAL,
//! `synchronous=NORMAL`), statements cached, calls made directly with no thread hop. A claim
//! takes up to 100 ready jobs in one `UPDATE … RETURNING` inside one write transaction; a
//! batch is marked done in one statement. SQLite has one writer at a time, so one connection
//! doing every write is the fastest honest shape: more connections would only queue on the
//! file lock.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::Notify;

use super::{Probe, RawError, CLAIM, QUEUE};

/// The raw queue's connection and its wake-up signal for an idle consumer.
#[derive(Debug, Clone)]
pub(crate) struct SqliteRaw {
    conn: Arc<Mutex<Connection>>,
    inserted: Arc<Notify>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn seq_of(payload: &str) -> u32 {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v["seq"].as_u64())
        .unwrap_or(u64::MAX) as u32
}

/// Claims up to [`CLAIM`] ready jobs, reports them to the probe and marks them done: the
/// count claimed (0 when the queue is empty).
fn claim_run_done(conn: &mut Connection, probe: &Probe) -> Result<usize, RawError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rows: Vec<(i64, String)> = {
        let mut claim = tx.prepare_cached(&format!(
            "UPDATE raw_jobs SET state = 'running', attempts = attempts + 1 WHERE id IN \
             (SELECT id FROM raw_jobs WHERE queue = ?1 AND state = 'ready' AND run_at <= ?2 \
              ORDER BY id LIMIT {CLAIM}) RETURNING id, payload"
        ))?;
        let rows = claim
            .query_map(params![QUEUE, now_ms()], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        rows
    };
    tx.commit()?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(rows.len());
    for (id, payload) in &rows {
        probe.ran(seq_of(payload));
        ids.push(*id);
    }
    let ids = serde_json::to_string(&ids)?;
    conn.prepare_cached(
        "UPDATE raw_jobs SET state = 'done' WHERE id IN (SELECT value FROM json_each(?1))",
    )?
    .execute([ids])?;
    Ok(rows.len())
}

impl SqliteRaw {
    /// Opens (creating) the raw queue's file with its table and index.
    pub(crate) fn open(path: &Path) -> Result<Self, RawError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
             CREATE TABLE raw_jobs (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, \
             payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'ready', \
             run_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0); \
             CREATE INDEX raw_ready ON raw_jobs (queue, id) WHERE state = 'ready';",
        )?;
        Ok(SqliteRaw {
            conn: Arc::new(Mutex::new(conn)),
            inserted: Arc::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn clear(&self) -> Result<(), RawError> {
        let conn = self.lock();
        conn.execute("DELETE FROM raw_jobs", [])?;
        // As errand's side: each round starts from an empty WAL.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    pub(crate) fn insert_one(&self, seq: u32) -> Result<(), RawError> {
        self.lock()
            .prepare_cached("INSERT INTO raw_jobs (queue, payload, run_at) VALUES (?1, ?2, ?3)")?
            .execute(params![QUEUE, format!("{{\"seq\":{seq}}}"), now_ms()])?;
        self.inserted.notify_one();
        Ok(())
    }

    /// One write transaction, one cached insert stepped per row.
    pub(crate) fn insert_many(&self, seqs: &[u32]) -> Result<(), RawError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO raw_jobs (queue, payload, run_at) VALUES (?1, ?2, ?3)",
            )?;
            let now = now_ms();
            for &seq in seqs {
                insert.execute(params![QUEUE, format!("{{\"seq\":{seq}}}"), now])?;
            }
        }
        tx.commit()?;
        self.inserted.notify_one();
        Ok(())
    }

    /// Claims, runs and marks done on a blocking thread until every job of `probe` ran.
    pub(crate) async fn process(&self, probe: &Arc<Probe>) -> Result<Duration, RawError> {
        let (raw, probe) = (self.clone(), probe.clone());
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let mut conn = raw.lock();
            while !probe.all_ran() {
                if claim_run_done(&mut conn, &probe)? == 0 {
                    std::thread::yield_now();
                }
            }
            Ok(start.elapsed())
        })
        .await
        .expect("raw worker thread")
    }

    /// A consumer woken in-process by inserts (or a 1 s poll) until `stop`.
    pub(crate) async fn consume_until(
        &self,
        probe: Arc<Probe>,
        stop: Arc<Notify>,
        ready: Arc<Notify>,
    ) -> Result<(), RawError> {
        ready.notify_one();
        loop {
            while claim_run_done(&mut self.lock(), &probe)? > 0 {}
            tokio::select! {
                _ = self.inserted.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.notified() => return Ok(()),
            }
        }
    }
}
