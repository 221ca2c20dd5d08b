//! Transactional enqueue on SQLite: jobs inserted in the application's own transaction
//! exist only if it commits, as on Postgres.

use errand_sqlite::{SqliteConnection, SqliteStore};

use crate::client::{count_enqueued, labels, prepare};
use crate::{Client, EnqueueError, Enqueued, Job, JobOptions};

impl Client<SqliteStore> {
    /// Enqueues `job` in the caller's transaction on the same file (pass `&mut *tx`, or any
    /// `&mut SqliteConnection` from [`SqliteStore::pool`]). Rolled back: no job. Committed:
    /// the job runs (claimed by the next claim after the commit).
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
        conn: &mut SqliteConnection,
        job: J,
    ) -> Result<Enqueued, EnqueueError> {
        self.enqueue_with_tx(conn, job, JobOptions::new()).await
    }

    /// [`enqueue_tx`](Self::enqueue_tx) with overrides.
    pub async fn enqueue_with_tx<J: Job>(
        &self,
        conn: &mut SqliteConnection,
        job: J,
        opts: JobOptions,
    ) -> Result<Enqueued, EnqueueError> {
        let now = self.now().await;
        let new = prepare(job, opts, self.payload_limit(), now)?;
        let labels = labels(std::slice::from_ref(&new));
        let res = self.store().insert_in(conn, vec![new], now).await?;
        Ok(count_enqueued(&labels, res).remove(0))
    }

    /// Enqueues jobs of one type in the caller's transaction.
    pub async fn enqueue_many_tx<J: Job>(
        &self,
        conn: &mut SqliteConnection,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        let limit = self.payload_limit();
        let now = self.now().await;
        let new = jobs
            .into_iter()
            .map(|j| prepare(j, JobOptions::new(), limit, now))
            .collect::<Result<Vec<_>, _>>()?;
        let labels = labels(&new);
        let res = self.store().insert_in(conn, new, now).await?;
        Ok(count_enqueued(&labels, res))
    }
}
