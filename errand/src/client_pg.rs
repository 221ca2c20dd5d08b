//! Transactional enqueue on Postgres: jobs inserted in the application's own transaction
//! exist only if it commits.

use errand_postgres::{PgConnection, PgStore};

use crate::client::{count_enqueued, labels, prepare};
use crate::{Client, EnqueueError, Enqueued, Job, JobOptions};

impl Client<PgStore> {
    /// Enqueues `job` in the caller's transaction (pass `&mut *tx`, or any
    /// `&mut PgConnection`). Rolled back: no job. Committed: the job runs, and idle workers
    /// are woken at commit.
    ///
    /// ```no_run
    /// # use errand::{Client, PgStore, Job, JobContext, JobError, Outcome};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Welcome { user: i64 }
    /// # impl Job for Welcome {
    /// #     const KIND: &'static str = "welcome";
    /// #     type State = ();
    /// #     async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) }
    /// # }
    /// # async fn demo(client: Client<PgStore>) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = client.store().pool().begin().await?;
    /// let user: i64 = sqlx::query_scalar("INSERT INTO users (name) VALUES ('ada') RETURNING id")
    ///     .fetch_one(&mut *tx)
    ///     .await?;
    /// client.enqueue_tx(&mut tx, Welcome { user }).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_tx<J: Job>(
        &self,
        conn: &mut PgConnection,
        job: J,
    ) -> Result<Enqueued, EnqueueError> {
        self.enqueue_with_tx(conn, job, JobOptions::new()).await
    }

    /// [`enqueue_tx`](Self::enqueue_tx) with overrides.
    pub async fn enqueue_with_tx<J: Job>(
        &self,
        conn: &mut PgConnection,
        job: J,
        opts: JobOptions,
    ) -> Result<Enqueued, EnqueueError> {
        let now = self.store().now_in(conn).await;
        let new = prepare(job, opts, self.payload_limit(), now)?;
        self.insert_tx(conn, vec![new], now)
            .await
            .map(|mut v| v.remove(0))
    }

    /// Enqueues jobs of one type in the caller's transaction, in one statement.
    pub async fn enqueue_many_tx<J: Job>(
        &self,
        conn: &mut PgConnection,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        let limit = self.payload_limit();
        let now = self.store().now_in(conn).await;
        let new = jobs
            .into_iter()
            .map(|j| prepare(j, JobOptions::new(), limit, now))
            .collect::<Result<Vec<_>, _>>()?;
        self.insert_tx(conn, new, now).await
    }

    async fn insert_tx(
        &self,
        conn: &mut PgConnection,
        jobs: Vec<errand_core::NewJob>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        let labels = labels(&jobs);
        let res = self.store().insert_in_at(conn, jobs, now).await?;
        Ok(count_enqueued(&labels, res))
    }
}
