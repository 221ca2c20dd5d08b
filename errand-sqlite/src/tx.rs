//! Working inside the application's own SQLite transaction: jobs inserted there exist only
//! if it commits, as on Postgres.

use chrono::{DateTime, Utc};
use errand_core::{InsertResult, JobState, NewJob, StoreError};
use sqlx::SqliteConnection;

use crate::queries::{to_json, NON_FINAL};
use crate::row::micros;
use crate::store::{db, SqliteStore};

impl SqliteStore {
    /// Inserts jobs on the caller's connection or transaction (`&mut *tx`): they exist only
    /// if it commits. A job whose unique key a non-final job holds is not written (its
    /// result carries the holder's id).
    ///
    /// It does not wait for this store's in-process write turn: the caller's transaction
    /// may already hold SQLite's write lock, which the store's own writers wait for. The
    /// queues' producers are woken at once; before the commit their claim finds nothing, and
    /// the job is claimed by the next claim after it (the poll interval at the latest).
    pub async fn insert_in(
        &self,
        conn: &mut SqliteConnection,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut scheduled = false;
        let mut woken = Vec::new();
        for job in &jobs {
            let state = job.state_at(now);
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO errand_jobs (kind, queue, args, state, priority, max_attempts, run_at, \
                 created_at, tags, unique_key, backoff, timeout_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(&job.kind)
            .bind(&job.queue)
            .bind(&job.args)
            .bind(state.as_str())
            .bind(job.priority)
            .bind(job.max_attempts)
            .bind(micros(job.run_at))
            .bind(micros(now))
            .bind(to_json(&job.tags))
            .bind(&job.unique_key)
            .bind(job.backoff.as_ref().map(to_json))
            .bind(job.timeout_ms)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
            match inserted {
                Some(id) => {
                    match state {
                        JobState::Available => woken.push(job.queue.clone()),
                        _ => scheduled = true,
                    }
                    out.push(InsertResult { id, inserted: true });
                }
                None => {
                    let sql =
                        format!("SELECT id FROM errand_jobs WHERE unique_key = ? AND {NON_FINAL}");
                    let id: i64 = sqlx::query_scalar(&sql)
                        .bind(&job.unique_key)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(db)?;
                    out.push(InsertResult {
                        id,
                        inserted: false,
                    });
                }
            }
        }
        for q in &woken {
            self.signals.notify(q);
        }
        if scheduled {
            self.signals.notify_scheduled();
        }
        Ok(out)
    }
}
