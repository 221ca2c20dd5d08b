//! The Postgres raw queue on tokio-postgres: the fastest hand-written queue we know how to
//! write on the same database, so that errand's ratios against it say what the database
//! leaves on the table.
//!
//! One table (`queue`, `jsonb` payload, `state`, `run_at`, `attempts`), a partial index
//! `(queue, id) WHERE state = 'ready'`, prepared statements, each worker task on its own
//! connection claiming `LIMIT 100 … FOR UPDATE SKIP LOCKED` in one `UPDATE … RETURNING` and
//! marking its batch done in one `UPDATE … WHERE id = ANY($1)`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use super::{Probe, RawError, CLAIM, QUEUE};

/// The raw queue's table, in the bench's scratch schema.
#[derive(Debug, Clone)]
pub(crate) struct PgRaw {
    url: String,
    table: String,
    channel: String,
}

/// A connection with the statements a producer or a worker uses, prepared once.
struct Conn {
    client: Client,
    insert: Statement,
    insert_notify: Statement,
    insert_many: Statement,
    claim: Statement,
    done: Statement,
}

impl Conn {
    /// Claims up to [`CLAIM`] ready jobs, reports them to the probe (decoding each payload, as
    /// a worker must) and marks them done in one statement: how many it claimed.
    async fn claim_run_done(&self, probe: &Probe) -> Result<usize, RawError> {
        let rows = self.client.query(&self.claim, &[&QUEUE]).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(row.get::<_, i64>(0));
            probe.ran(seq_of(&row.get::<_, Value>(1)));
        }
        self.client.execute(&self.done, &[&ids]).await?;
        Ok(rows.len())
    }
}

async fn connect(url: &str) -> Result<(Client, tokio::task::JoinHandle<()>), RawError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, driver))
}

fn seq_of(payload: &Value) -> u32 {
    payload["seq"].as_u64().unwrap_or(u64::MAX) as u32
}

impl PgRaw {
    pub(crate) fn new(url: &str, schema: &str) -> Self {
        PgRaw {
            url: url.to_owned(),
            table: format!("\"{schema}\".raw_jobs"),
            channel: format!("raw_{schema}"),
        }
    }

    async fn conn(&self) -> Result<(Conn, tokio::task::JoinHandle<()>), RawError> {
        let (client, driver) = connect(&self.url).await?;
        let t = &self.table;
        let conn = Conn {
            insert: client
                .prepare_typed(
                    &format!("INSERT INTO {t} (queue, payload) VALUES ($1, $2)"),
                    &[Type::TEXT, Type::JSONB],
                )
                .await?,
            // Notify in the same statement, as a hand-written queue with LISTEN would.
            insert_notify: client
                .prepare_typed(
                    &format!(
                        "WITH ins AS (INSERT INTO {t} (queue, payload) VALUES ($1, $2) RETURNING id) \
                         SELECT pg_notify($3, '') FROM ins"
                    ),
                    &[Type::TEXT, Type::JSONB, Type::TEXT],
                )
                .await?,
            // Notifies once per batch: a queue with idle consumers must wake them. A
            // data-modifying WITH runs whether or not it is read.
            insert_many: client
                .prepare_typed(
                    &format!(
                        "WITH ins AS (INSERT INTO {t} (queue, payload) \
                         SELECT $1, p FROM unnest($2::jsonb[]) AS p) SELECT pg_notify($3, '')"
                    ),
                    &[Type::TEXT, Type::JSONB_ARRAY, Type::TEXT],
                )
                .await?,
            claim: client
                .prepare_typed(
                    &format!(
                        "UPDATE {t} SET state = 'running', attempts = attempts + 1 WHERE id IN \
                         (SELECT id FROM {t} WHERE queue = $1 AND state = 'ready' AND run_at <= now() \
                          ORDER BY id LIMIT {CLAIM} FOR UPDATE SKIP LOCKED) RETURNING id, payload"
                    ),
                    &[Type::TEXT],
                )
                .await?,
            done: client
                .prepare_typed(
                    &format!("UPDATE {t} SET state = 'done' WHERE id = ANY($1)"),
                    &[Type::INT8_ARRAY],
                )
                .await?,
            client,
        };
        Ok((conn, driver))
    }

    pub(crate) async fn setup(&self) -> Result<(), RawError> {
        let (client, _driver) = connect(&self.url).await?;
        let t = &self.table;
        client
            .batch_execute(&format!(
                "CREATE TABLE {t} (id bigserial PRIMARY KEY, queue text NOT NULL, \
                 payload jsonb NOT NULL, state text NOT NULL DEFAULT 'ready', \
                 run_at timestamptz NOT NULL DEFAULT now(), attempts integer NOT NULL DEFAULT 0); \
                 CREATE INDEX ON {t} (queue, id) WHERE state = 'ready';"
            ))
            .await?;
        Ok(())
    }

    pub(crate) async fn clear(&self) -> Result<(), RawError> {
        let (client, _driver) = connect(&self.url).await?;
        client
            .batch_execute(&format!("TRUNCATE {}", self.table))
            .await?;
        Ok(())
    }

    /// A producer: one connection, statements prepared.
    pub(crate) async fn producer(&self) -> Result<PgProducer, RawError> {
        let (conn, driver) = self.conn().await?;
        Ok(PgProducer {
            conn,
            channel: self.channel.clone(),
            table: self.table.clone(),
            _driver: DropAbort(driver),
        })
    }

    /// `workers` tasks, each on its own connection, claim, run (count) and mark done until
    /// every job of `probe` ran.
    pub(crate) async fn process(
        &self,
        probe: &Arc<Probe>,
        workers: usize,
    ) -> Result<Duration, RawError> {
        let mut conns = Vec::new();
        for _ in 0..workers {
            conns.push(self.conn().await?);
        }
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (conn, driver) in conns {
            let probe = probe.clone();
            tasks.push(tokio::spawn(async move {
                let _driver = DropAbort(driver);
                loop {
                    if conn.claim_run_done(&probe).await? == 0 {
                        if probe.all_ran() {
                            return Ok::<_, RawError>(());
                        }
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("raw worker task")?;
        }
        Ok(start.elapsed())
    }

    /// A consumer woken by `LISTEN` (or a 1 s poll) until `stop`.
    pub(crate) async fn consume_until(
        &self,
        probe: Arc<Probe>,
        stop: Arc<Notify>,
        ready: Arc<Notify>,
    ) -> Result<(), RawError> {
        // The listening connection is driven here, its notifications forwarded as wake-ups.
        let (listener, mut connection) = tokio_postgres::connect(&self.url, NoTls).await?;
        let wake = Arc::new(Notify::new());
        let forward = {
            let wake = wake.clone();
            tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(m)) = messages.next().await {
                    if let AsyncMessage::Notification(_) = m {
                        wake.notify_one();
                    }
                }
            })
        };
        let _forward = DropAbort(forward);
        listener
            .batch_execute(&format!("LISTEN \"{}\"", self.channel))
            .await?;
        let (conn, driver) = self.conn().await?;
        let _driver = DropAbort(driver);
        ready.notify_one();
        loop {
            while conn.claim_run_done(&probe).await? > 0 {}
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.notified() => return Ok(()),
            }
        }
    }
}

/// The producer side of the raw queue: single inserts (with or without `NOTIFY`), multi-row
/// inserts and `COPY`.
pub(crate) struct PgProducer {
    conn: Conn,
    channel: String,
    table: String,
    _driver: DropAbort,
}

impl PgProducer {
    pub(crate) async fn insert_one(&self, seq: u32, notify: bool) -> Result<(), RawError> {
        let payload = json!({ "seq": seq });
        if notify {
            self.conn
                .client
                .execute(&self.conn.insert_notify, &[&QUEUE, &payload, &self.channel])
                .await?;
        } else {
            self.conn
                .client
                .execute(&self.conn.insert, &[&QUEUE, &payload])
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn insert_many(&self, seqs: &[u32]) -> Result<(), RawError> {
        let payloads: Vec<Value> = seqs.iter().map(|&seq| json!({ "seq": seq })).collect();
        self.conn
            .client
            .execute(&self.conn.insert_many, &[&QUEUE, &payloads, &self.channel])
            .await?;
        Ok(())
    }

    /// `COPY … FROM STDIN (FORMAT binary)` of the batch, then one `NOTIFY`.
    pub(crate) async fn copy_many(&self, seqs: &[u32]) -> Result<(), RawError> {
        let sink = self
            .conn
            .client
            .copy_in(&format!(
                "COPY {} (queue, payload) FROM STDIN (FORMAT binary)",
                self.table
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::JSONB]);
        let mut writer = std::pin::pin!(writer);
        for &seq in seqs {
            writer
                .as_mut()
                .write(&[&QUEUE, &json!({ "seq": seq })])
                .await?;
        }
        writer.finish().await?;
        self.conn
            .client
            .execute("SELECT pg_notify($1, '')", &[&self.channel])
            .await?;
        Ok(())
    }
}

/// Aborts a connection's driver task when dropped.
struct DropAbort(tokio::task::JoinHandle<()>);

impl Drop for DropAbort {
    fn drop(&mut self) {
        self.0.abort();
    }
}
