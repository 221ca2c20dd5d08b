//! The raw baseline: the plainest correct queue one can write by hand on the same database,
//! written to be as fast as it honestly can. One table; single `INSERT` per single enqueue;
//! one multi-row `INSERT` per batch; claim `LIMIT 100 … FOR UPDATE SKIP LOCKED` in one
//! `UPDATE … RETURNING` (SQLite: the same shape, one write statement); mark done in one
//! statement per batch. It measures the database's limit, against which errand is judged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{PgPool, SqlitePool};
use tokio::sync::Notify;

use super::Probe;

/// Jobs claimed per statement.
const CLAIM: i64 = 100;

#[derive(Debug, Clone)]
pub(crate) enum Raw {
    Pg {
        pool: PgPool,
        table: String,
        channel: String,
    },
    Sqlite {
        pool: SqlitePool,
        inserted: Arc<Notify>,
    },
}

impl Raw {
    pub(crate) async fn setup(&self) -> Result<(), sqlx::Error> {
        match self {
            Raw::Pg { pool, table, .. } => {
                sqlx::query(&format!(
                    "CREATE TABLE {table} (id bigserial PRIMARY KEY, seq integer NOT NULL, \
                     state text NOT NULL DEFAULT 'available')"
                ))
                .execute(pool)
                .await?;
                sqlx::query(&format!(
                    "CREATE INDEX ON {table} (id) WHERE state = 'available'"
                ))
                .execute(pool)
                .await?;
            }
            Raw::Sqlite { pool, .. } => {
                sqlx::query(
                    "CREATE TABLE raw_jobs (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, \
                     state TEXT NOT NULL DEFAULT 'available')",
                )
                .execute(pool)
                .await?;
                sqlx::query(
                    "CREATE INDEX raw_available ON raw_jobs (id) WHERE state = 'available'",
                )
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn clear(&self) -> Result<(), sqlx::Error> {
        match self {
            Raw::Pg { pool, table, .. } => {
                sqlx::query(&format!("TRUNCATE {table}"))
                    .execute(pool)
                    .await?;
            }
            Raw::Sqlite { pool, .. } => {
                sqlx::query("DELETE FROM raw_jobs").execute(pool).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn insert_one(&self, seq: u32) -> Result<(), sqlx::Error> {
        match self {
            Raw::Pg {
                pool,
                table,
                channel,
            } => {
                // Notify in the same statement, as a hand-written queue with LISTEN would.
                sqlx::query(&format!(
                    "WITH ins AS (INSERT INTO {table} (seq) VALUES ($1) RETURNING id) \
                     SELECT pg_notify($2, '') FROM ins"
                ))
                .bind(seq as i32)
                .bind(channel)
                .execute(pool)
                .await?;
            }
            Raw::Sqlite { pool, inserted } => {
                sqlx::query("INSERT INTO raw_jobs (seq) VALUES (?)")
                    .bind(seq)
                    .execute(pool)
                    .await?;
                inserted.notify_one();
            }
        }
        Ok(())
    }

    pub(crate) async fn insert_many(&self, seqs: &[u32]) -> Result<(), sqlx::Error> {
        match self {
            Raw::Pg {
                pool,
                table,
                channel,
            } => {
                // Notifies once per batch, as its single insert does and a hand-written queue
                // with LISTEN must (or its idle workers would miss batch-inserted jobs until
                // their next poll). A data-modifying WITH runs whether or not it is read.
                let seqs: Vec<i32> = seqs.iter().map(|s| *s as i32).collect();
                sqlx::query(&format!(
                    "WITH ins AS (INSERT INTO {table} (seq) SELECT * FROM unnest($1::int4[])) \
                     SELECT pg_notify($2, '')"
                ))
                .bind(seqs)
                .bind(channel)
                .execute(pool)
                .await?;
            }
            Raw::Sqlite { pool, inserted } => {
                let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO raw_jobs (seq) ");
                qb.push_values(seqs, |mut b, s| {
                    b.push_bind(*s);
                });
                qb.build().execute(pool).await?;
                inserted.notify_one();
            }
        }
        Ok(())
    }

    async fn claim(&self) -> Result<Vec<(i64, i32)>, sqlx::Error> {
        match self {
            Raw::Pg { pool, table, .. } => {
                sqlx::query_as(&format!(
                    "UPDATE {table} SET state = 'running' WHERE id IN \
                     (SELECT id FROM {table} WHERE state = 'available' ORDER BY id \
                      LIMIT {CLAIM} FOR UPDATE SKIP LOCKED) RETURNING id, seq"
                ))
                .fetch_all(pool)
                .await
            }
            Raw::Sqlite { pool, .. } => {
                sqlx::query_as(&format!(
                    "UPDATE raw_jobs SET state = 'running' WHERE id IN \
                     (SELECT id FROM raw_jobs WHERE state = 'available' ORDER BY id LIMIT {CLAIM}) \
                     RETURNING id, seq"
                ))
                .fetch_all(pool)
                .await
            }
        }
    }

    async fn complete(&self, ids: Vec<i64>) -> Result<(), sqlx::Error> {
        match self {
            Raw::Pg { pool, table, .. } => {
                sqlx::query(&format!(
                    "UPDATE {table} SET state = 'done' WHERE id = ANY($1)"
                ))
                .bind(ids)
                .execute(pool)
                .await?;
            }
            Raw::Sqlite { pool, .. } => {
                let list = serde_json::to_string(&ids).expect("ids serialize");
                sqlx::query("UPDATE raw_jobs SET state = 'done' WHERE id IN (SELECT value FROM json_each(?))")
                    .bind(list)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// `workers` tasks claim, run (count) and complete until every job of `probe` ran.
    pub(crate) async fn process(
        &self,
        probe: &Arc<Probe>,
        workers: usize,
    ) -> Result<Duration, sqlx::Error> {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (raw, probe) = (self.clone(), probe.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let rows = raw.claim().await?;
                    if rows.is_empty() {
                        if probe.all_ran() {
                            return Ok::<_, sqlx::Error>(());
                        }
                        tokio::task::yield_now().await;
                        continue;
                    }
                    for (_, seq) in &rows {
                        probe.ran(*seq as u32);
                    }
                    raw.complete(rows.into_iter().map(|(id, _)| id).collect())
                        .await?;
                }
            }));
        }
        for t in tasks {
            t.await.expect("raw worker task")?;
        }
        Ok(start.elapsed())
    }

    /// Runs a consumer woken by inserts (Postgres `LISTEN`, SQLite in-process) until `stop`.
    pub(crate) async fn consume_until(
        &self,
        probe: Arc<Probe>,
        stop: Arc<Notify>,
    ) -> Result<(), sqlx::Error> {
        let wake = Arc::new(Notify::new());
        let _listener = match self {
            Raw::Pg { pool, channel, .. } => {
                let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
                l.listen(channel).await?;
                let wake = wake.clone();
                Some(tokio::spawn(async move {
                    while l.recv().await.is_ok() {
                        wake.notify_one();
                    }
                }))
            }
            Raw::Sqlite { inserted, .. } => {
                let (inserted, wake) = (inserted.clone(), wake.clone());
                Some(tokio::spawn(async move {
                    loop {
                        inserted.notified().await;
                        wake.notify_one();
                    }
                }))
            }
        };
        loop {
            loop {
                let rows = self.claim().await?;
                if rows.is_empty() {
                    break;
                }
                for (_, seq) in &rows {
                    probe.ran(*seq as u32);
                }
                self.complete(rows.into_iter().map(|(id, _)| id).collect())
                    .await?;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.notified() => {
                    if let Some(h) = _listener { h.abort(); }
                    return Ok(());
                }
            }
        }
    }
}
