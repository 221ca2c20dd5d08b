//! Working inside the application's own transaction, on SQLite and Postgres alike: jobs
//! enqueued there exist only if it commits, and a job may record its completion together with
//! its own writes ([`JobContext::complete_in`](crate::JobContext::complete_in)).

use std::future::Future;

use chrono::{DateTime, Utc};
use errand_core::{InsertResult, LeaseRef, NewJob, Store, StoreError};

use crate::client::{labels, prepare, prepare_all};
use crate::{Client, EnqueueError, Enqueued, Job, JobOptions};

mod sealed {
    pub trait Sealed {}
}

/// A store that can write inside the application's transaction on the same database:
/// [`SqliteStore`](crate::SqliteStore) (its connection: `SqliteConnection`) and
/// `PgStore` with the `postgres` feature (`PgConnection`). Sealed: the methods are errand's.
pub trait TxStore: Store + sealed::Sealed {
    /// The connection type a transaction of this database derefs to (`&mut *tx`).
    type Connection: Send;

    #[doc(hidden)]
    fn tx_now(&self, conn: &mut Self::Connection) -> impl Future<Output = DateTime<Utc>> + Send;

    #[doc(hidden)]
    fn tx_insert(
        &self,
        conn: &mut Self::Connection,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<InsertResult>, StoreError>> + Send;

    #[doc(hidden)]
    fn tx_insert_workflow(
        &self,
        conn: &mut Self::Connection,
        wf: &errand_core::NewWorkflow,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<errand_core::JobId>, StoreError>> + Send;

    #[doc(hidden)]
    fn tx_complete(
        &self,
        conn: &mut Self::Connection,
        lease: LeaseRef,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

macro_rules! tx_store {
    ($feature:literal, $store:ty, $conn:ty) => {
        #[cfg(feature = $feature)]
        impl sealed::Sealed for $store {}

        #[cfg(feature = $feature)]
        impl TxStore for $store {
            type Connection = $conn;

            async fn tx_now(&self, conn: &mut $conn) -> DateTime<Utc> {
                self.now_in(conn).await
            }

            async fn tx_insert(
                &self,
                conn: &mut $conn,
                jobs: Vec<NewJob>,
                now: DateTime<Utc>,
            ) -> Result<Vec<InsertResult>, StoreError> {
                self.insert_in_at(conn, jobs, now).await
            }

            async fn tx_insert_workflow(
                &self,
                conn: &mut $conn,
                wf: &errand_core::NewWorkflow,
                now: DateTime<Utc>,
            ) -> Result<Vec<errand_core::JobId>, StoreError> {
                self.insert_workflow_in_at(conn, wf, now).await
            }

            async fn tx_complete(
                &self,
                conn: &mut $conn,
                lease: LeaseRef,
            ) -> Result<bool, StoreError> {
                self.complete_in(conn, lease).await
            }
        }
    };
}

tx_store!(
    "sqlite",
    errand_sqlite::SqliteStore,
    errand_sqlite::SqliteConnection
);
tx_store!(
    "postgres",
    errand_postgres::PgStore,
    errand_postgres::PgConnection
);

impl<S: TxStore> Client<S> {
    /// Enqueues `job` in the caller's transaction on the store's database (pass `&mut *tx`,
    /// or any connection of the store's pool). Rolled back: no job. Committed: the job runs —
    /// on Postgres idle workers are woken at commit; on SQLite the next claim after the commit
    /// takes it.
    ///
    /// Counted in `errand_jobs_enqueued_in_tx_total` when inserted, before the caller's
    /// commit or rollback (errand cannot see which): `errand_jobs_enqueued_total` counts only
    /// jobs the client committed itself.
    ///
    /// ```
    /// # use errand::{Client, SqliteStore, Job, JobContext, JobError, Outcome};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Welcome { user: i64 }
    /// # impl Job for Welcome {
    /// #     const KIND: &'static str = "welcome";
    /// #     type State = ();
    /// #     async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let client = Client::new(SqliteStore::open(dir.path().join("app.db").to_str().unwrap()).await?);
    /// let mut tx = client.store().pool().begin().await?;
    /// sqlx::query("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
    ///     .execute(&mut *tx)
    ///     .await?;
    /// let user: i64 = sqlx::query_scalar("INSERT INTO users (name) VALUES ('ada') RETURNING id")
    ///     .fetch_one(&mut *tx)
    ///     .await?;
    /// client.enqueue_tx(&mut tx, Welcome { user }).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_tx<J: Job>(
        &self,
        conn: &mut S::Connection,
        job: J,
    ) -> Result<Enqueued, EnqueueError> {
        self.enqueue_with_tx(conn, job, JobOptions::new()).await
    }

    /// [`enqueue_tx`](Self::enqueue_tx) with this call's options.
    pub async fn enqueue_with_tx<J: Job>(
        &self,
        conn: &mut S::Connection,
        job: J,
        opts: JobOptions,
    ) -> Result<Enqueued, EnqueueError> {
        let now = self.store().tx_now(conn).await;
        let new = prepare(job, opts, self.payload_limit(), now)?;
        self.insert_tx(conn, vec![new], now)
            .await
            .map(|mut v| v.remove(0))
    }

    /// Enqueues jobs of one type in the caller's transaction (on Postgres in one statement).
    pub async fn enqueue_many_tx<J: Job>(
        &self,
        conn: &mut S::Connection,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        let limit = self.payload_limit();
        let now = self.store().tx_now(conn).await;
        let new = prepare_all(jobs, limit, now)?;
        self.insert_tx(conn, new, now).await
    }

    async fn insert_tx(
        &self,
        conn: &mut S::Connection,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        let labels = labels(&jobs);
        let res = self.store().tx_insert(conn, jobs, now).await?;
        labels.count(&res, crate::telemetry::enqueued_in_tx);
        Ok(res.into_iter().map(Enqueued::from).collect())
    }
}
