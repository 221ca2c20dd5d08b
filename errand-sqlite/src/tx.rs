//! Working inside the application's own SQLite transaction: jobs inserted there exist only
//! if it commits, as on Postgres.

use chrono::{DateTime, Utc};
use errand_core::{InsertResult, JobState, LeaseRef, NewJob, StoreError};
use sqlx::SqliteConnection;

use crate::error::db;
use crate::row::micros;
use crate::sql::{to_json, FINAL};
use crate::store::SqliteStore;
use errand_core::UNIQUE_HOLDS_SQL;

impl SqliteStore {
    /// The time jobs inserted on `conn` are stamped with: this machine's clock (the same
    /// parameter as Postgres' `now_in`, which reads the database's).
    pub async fn now_in(&self, _conn: &mut SqliteConnection) -> DateTime<Utc> {
        Utc::now()
    }

    /// [`insert_in_at`](Self::insert_in_at) at this machine's time.
    pub async fn insert_in(
        &self,
        conn: &mut SqliteConnection,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        self.insert_in_at(conn, jobs, Utc::now()).await
    }

    /// Inserts a workflow's steps on the caller's transaction (`&mut *tx`) at `now`: they
    /// exist only if it commits. Returns the job ids in `wf.steps` order. Producers of the
    /// queues of steps due at once are woken now; the claim after the commit finds them.
    /// Best in a transaction begun with `BEGIN IMMEDIATE`: in a deferred one, another
    /// connection writing between this insert's reads and writes makes it fail as busy
    /// (nothing written; retry the transaction).
    pub async fn insert_workflow_in_at(
        &self,
        conn: &mut SqliteConnection,
        wf: &errand_core::NewWorkflow,
        now: DateTime<Utc>,
    ) -> Result<Vec<errand_core::JobId>, StoreError> {
        let done = crate::workflow::insert_on(conn, wf, now).await?;
        self.workflows_seen
            .store(true, std::sync::atomic::Ordering::Relaxed);
        done.wake(self);
        Ok(done.ids)
    }

    /// Marks the running attempt `lease` completed on the caller's connection or
    /// transaction, together with the job's own writes: committed, the job never runs again.
    /// Returns `false` when the attempt no longer holds the job (cancelled, or rescued after
    /// a lost lease): the caller should then roll back.
    pub async fn complete_in(
        &self,
        conn: &mut SqliteConnection,
        lease: LeaseRef,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE errand_jobs SET state = 'completed', lease_expires_at = NULL, \
             finalized_at = ?, has_dependents = has_dependents \
             WHERE id = ? AND attempt = ? AND state = 'running'",
        )
        .bind(micros(Utc::now()))
        .bind(lease.id)
        .bind(lease.attempt)
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(res.rows_affected() == 1)
    }

    /// Inserts jobs on the caller's connection or transaction (`&mut *tx`): they exist only
    /// if it commits. A job whose unique key another job holds is not written (its result
    /// carries the holder's id).
    ///
    /// It does not wait for this store's in-process write turn: the caller's transaction
    /// may already hold SQLite's write lock, which the store's own writers wait for. The
    /// queues' producers are woken at once; before the commit their claim finds nothing, and
    /// the job is claimed by the next claim after it (the poll interval at the latest).
    pub async fn insert_in_at(
        &self,
        conn: &mut SqliteConnection,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut scheduled = false;
        let mut woken = Vec::new();
        for job in &jobs {
            let result = insert_keyed(conn, job, now).await?;
            if result.inserted {
                match job.state_at(now) {
                    JobState::Available => woken.push(job.queue.clone()),
                    _ => scheduled = true,
                }
            }
            out.push(result);
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

/// Inserts one job on `conn`, unless a job holding its unique key exists: then the
/// holder's id, `inserted: false`. A holder whose uniqueness period has passed since it
/// finished is let go of first. The statements every keyed insert runs (the store's own
/// transactions and the application's).
/// One job, its id as `FIRST_ID` says; nothing when its unique key is held.
static INSERT_KEYED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO errand_jobs (id, kind, queue, args, state, priority, max_attempts, run_at, \
         created_at, tags, unique_key, backoff, timeout_ms, unique_states, unique_for_ms, \
         partition_key) \
         VALUES ({}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
        crate::insert::FIRST_ID
    )
});

pub(crate) async fn insert_keyed(
    conn: &mut SqliteConnection,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<InsertResult, StoreError> {
    let mut released = false;
    loop {
        let inserted: Option<i64> = sqlx::query_scalar(&INSERT_KEYED)
            .bind(&job.kind)
            .bind(&job.queue)
            .bind(&job.args)
            .bind(job.state_at(now).as_str())
            .bind(job.priority)
            .bind(job.max_attempts)
            .bind(micros(job.run_at))
            .bind(micros(now))
            .bind(to_json(&job.tags))
            .bind(&job.unique_key)
            .bind(job.backoff.as_ref().map(to_json))
            .bind(job.timeout_ms)
            .bind(job.unique_states.bits())
            .bind(job.unique_for_ms)
            .bind(&job.partition_key)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?
            .into_iter()
            .next();
        if let Some(id) = inserted {
            return Ok(InsertResult { id, inserted: true });
        }
        // The key is held. Writes on this file take turns, so once an expired holder is let
        // go of the next try inserts.
        if !released && release_expired(conn, job.unique_key.as_deref(), None, now).await? {
            released = true;
            continue;
        }
        let sql = format!("SELECT id FROM errand_jobs WHERE unique_key = ? AND {UNIQUE_HOLDS_SQL}");
        let id: i64 = sqlx::query_scalar(&sql)
            .bind(&job.unique_key)
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        return Ok(InsertResult {
            id,
            inserted: false,
        });
    }
}

/// Lets go of `key` where a finished job (other than `except`) held it past its uniqueness
/// period at `now`: its final states stop holding. Returns whether one was let go of.
pub(crate) async fn release_expired(
    conn: &mut SqliteConnection,
    key: Option<&str>,
    except: Option<i64>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let sql = format!(
        "UPDATE errand_jobs SET unique_states = 15 \
         WHERE unique_key = ?1 AND id IS NOT ?2 AND {FINAL} AND unique_for_ms IS NOT NULL \
           AND finalized_at + unique_for_ms * 1000 <= ?3"
    );
    let res = sqlx::query(&sql)
        .bind(key)
        .bind(except)
        .bind(micros(now))
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(res.rows_affected() > 0)
}
