//! Working inside the application's own transaction: enqueue jobs that exist only if it
//! commits, and complete a running job together with the job's own writes.

use chrono::Utc;
use errand_core::{InsertResult, LeaseRef, NewJob, StoreError};
use sqlx::PgConnection;

use crate::error::db;
use crate::store::PgStore;

impl PgStore {
    /// The database's time ([`Store::now`](errand_core::Store::now)), read on `conn` when
    /// it must be read at all: inside a transaction, from the transaction's own connection
    /// (another connection could wait for a pool whose last one the transaction holds).
    pub async fn now_in(&self, conn: &mut PgConnection) -> chrono::DateTime<Utc> {
        self.inner.clock.now(conn, Utc::now()).await
    }

    /// Inserts jobs on the caller's connection or transaction (`&mut *tx`). They become
    /// visible, and producers are notified, only when that transaction commits.
    pub async fn insert_in(
        &self,
        conn: &mut PgConnection,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        let now = self.now_in(conn).await;
        self.insert_in_at(conn, jobs, now).await
    }

    /// [`insert_in`](Self::insert_in) at `now`, a time read from [`Store::now`](errand_core::Store::now).
    pub async fn insert_in_at(
        &self,
        conn: &mut PgConnection,
        jobs: Vec<NewJob>,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<InsertResult>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(crate::insert::insert_on(self, conn, &jobs, now)
            .await?
            .results)
    }

    /// Inserts a workflow's steps on the caller's transaction (`&mut *tx`) at `now`, a
    /// time read from [`Store::now`](errand_core::Store::now): they exist, and producers
    /// are notified, only when it commits. Must be a transaction: the existing steps the new
    /// ones depend on stay locked until it ends. Returns the job ids in `wf.steps` order.
    pub async fn insert_workflow_in_at(
        &self,
        conn: &mut PgConnection,
        wf: &errand_core::NewWorkflow,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<errand_core::JobId>, StoreError> {
        Ok(crate::workflow::insert_on(self, conn, wf, now).await?.ids)
    }

    /// Marks the running attempt `lease` completed on the caller's transaction. Returns
    /// `false` when the attempt no longer holds the job (cancelled or rescued): the caller
    /// should then roll back its own writes.
    pub async fn complete_in(
        &self,
        conn: &mut PgConnection,
        lease: LeaseRef,
    ) -> Result<bool, StoreError> {
        let now = self.now_in(conn).await;
        let rows = sqlx::query(&self.inner.sql.complete_in_tx)
            .bind(now)
            .bind(lease.id)
            .bind(lease.attempt)
            .bind(&self.inner.channel)
            .fetch_all(conn)
            .await
            .map_err(db)?;
        Ok(rows.len() == 1)
    }
}
