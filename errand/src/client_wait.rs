//! Reading what a job returned, and waiting for a job to end.

use std::time::Duration;

use errand_core::{JobId, JobRow, Store};
use serde::de::DeserializeOwned;

use crate::{Client, Produces, ResultError};

/// The output of `row`, a job of type `J` (see [`Produces`]).
fn output_of<J: Produces>(row: &JobRow) -> Result<Option<J::Output>, ResultError> {
    if row.kind != J::KIND {
        return Err(ResultError::Kind {
            id: row.id,
            expected: J::KIND,
            found: row.kind.clone(),
        });
    }
    Ok(row.result_as()?)
}

/// First pause between looks at a waited-on job where the store hears other processes
/// (Postgres `NOTIFY`, memory): only a safety net for a notification sent before this
/// process listened.
pub(crate) const HEARD_POLL: Duration = Duration::from_secs(1);
/// First pause where it does not (SQLite: another process's worker may finish the job).
const UNHEARD_POLL: Duration = Duration::from_millis(50);
/// The longest pause between looks.
const MAX_POLL: Duration = Duration::from_secs(5);
const MAX_UNHEARD_POLL: Duration = Duration::from_millis(500);

impl<S: Store> Client<S> {
    /// What job `id` returned ([`Outcome::complete_with`](crate::Outcome::complete_with)),
    /// read as `T`: `None` while it has not completed, or when it completed without a value.
    ///
    /// ```
    /// # use errand::{Client, MemoryStore};
    /// # async fn f(client: Client<MemoryStore>, id: i64) -> Result<(), errand::ResultError> {
    /// let url: Option<String> = client.result(id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn result<T: DeserializeOwned>(&self, id: JobId) -> Result<Option<T>, ResultError> {
        let row = self
            .store()
            .get(id)
            .await?
            .ok_or(ResultError::NotFound(id))?;
        Ok(row.result_as()?)
    }

    /// What job `id`, a `J`, returned (see [`Produces`]): `None` while it has not completed.
    /// Fails with [`ResultError::Kind`] when job `id` is of another kind, and
    /// [`ResultError::Type`] when what it stored does not read as `J::Output`.
    ///
    /// ```
    /// # use errand::{Client, Job, JobContext, JobError, MemoryStore, Outcome, Produces};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct FetchPage;
    /// # impl Job for FetchPage {
    /// #     const KIND: &'static str = "fetch_page"; type State = ();
    /// #     async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) }
    /// # }
    /// # impl Produces for FetchPage { type Output = u16; }
    /// # async fn f(client: Client<MemoryStore>, id: i64) -> Result<(), errand::ResultError> {
    /// let status: Option<u16> = client.output::<FetchPage>(id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn output<J: Produces>(&self, id: JobId) -> Result<Option<J::Output>, ResultError> {
        let row = self
            .store()
            .get(id)
            .await?
            .ok_or(ResultError::NotFound(id))?;
        output_of::<J>(&row)
    }

    /// Waits until job `id`, a `J`, ends (as [`wait`](Self::wait) does) and returns its
    /// output. Fails with [`ResultError::NoOutput`] when it was discarded or cancelled, or
    /// completed without a value, and as [`output`](Self::output) does otherwise.
    pub async fn wait_output<J: Produces>(
        &self,
        id: JobId,
        timeout: Duration,
    ) -> Result<J::Output, ResultError> {
        let row = self.wait(id, timeout).await?;
        output_of::<J>(&row)?.ok_or_else(|| ResultError::NoOutput {
            id,
            state: row.state,
            reason: row.errors.last().map(|e| e.message.clone()),
        })
    }

    /// Waits until job `id` reaches a final state (completed, discarded or cancelled) and
    /// returns it as it ended: its result ([`JobRow::result_as`]), its errors, its last
    /// progress. Fails with [`ResultError::TimedOut`] after `timeout`; the job goes on.
    ///
    /// Works from any process. On Postgres the job is marked as waited on, so recording its
    /// end sends a `NOTIFY` that wakes the wait at once (a job nobody waits on sends none);
    /// in the worker's own process every store wakes it at once; SQLite jobs finished by
    /// another process are seen by looking again, every 50 ms at first, then less often up
    /// to every 500 ms.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use errand::{Client, MemoryStore};
    /// # async fn f(client: Client<MemoryStore>, id: i64) -> Result<(), errand::ResultError> {
    /// let row = client.wait(id, Duration::from_secs(30)).await?;
    /// let url: Option<String> = row.result_as()?;
    /// # Ok(()) }
    /// ```
    pub async fn wait(&self, id: JobId, timeout: Duration) -> Result<JobRow, ResultError> {
        let store = self.store();
        // Subscribe before looking, so an end between the look and the wait is not missed.
        let mut ended = store.signals().ended();
        // A store that can hear other processes starts listening (a no-op elsewhere, and
        // when it listens already).
        store.listen();
        let heard = store.hears_other_processes();
        store.watch_end(id).await?;
        let began = tokio::time::Instant::now();
        let deadline = began + timeout;
        let (mut poll, max) = if heard {
            (self.heard_poll, self.heard_poll.max(MAX_POLL))
        } else {
            (UNHEARD_POLL, MAX_UNHEARD_POLL)
        };
        loop {
            let row = store.get(id).await?.ok_or(ResultError::NotFound(id))?;
            if row.state.is_final() {
                return Ok(row);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ResultError::TimedOut {
                    id,
                    state: row.state,
                    waited: now - began,
                });
            }
            let nap = tokio::time::sleep(poll.min(deadline - now));
            tokio::pin!(nap);
            tokio::select! {
                changed = ended.changed() => {
                    if changed.is_err() {
                        // The store is gone; the next look says how.
                        nap.await;
                    }
                }
                () = &mut nap => poll = (poll * 2).min(max),
            }
        }
    }
}
