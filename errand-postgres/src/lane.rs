//! A few connections kept out of sqlx's pool for the hot paths (an enqueue, a claim, an
//! outcome batch). sqlx pings every connection it takes back into its pool — one more round trip
//! and a background task per statement, on both ends — before anyone may use it again. A
//! connection here goes back only after a complete answer (the server ready for the next
//! statement), so it is reused as it is; one left idle for a second or more is pinged
//! first, as the pool does (`store::pool_options`). An error, or a caller that stops
//! waiting mid-statement, drops the connection instead (closing it).
//!
//! At most [`LANE`] exist at once per store handle, opened through the pool (its options
//! and `after_connect` hooks) and detached from it; beyond that, callers use the pool as
//! before. A process may therefore hold `LANE` connections more than its pool's size.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use errand_core::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};

use crate::error::db;

/// Connections a lane may hold at once.
pub(crate) const LANE: usize = 2;

/// Connections of one store handle kept out of its pool (see the module).
#[derive(Debug, Default)]
pub(crate) struct Lane {
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    /// Lane connections in existence, idle or in use.
    open: AtomicUsize,
}

/// A connection taken from the lane; [`Taken::back`] returns it after a complete answer.
#[derive(Debug)]
pub(crate) struct Taken<'a> {
    lane: &'a Lane,
    conn: Option<PgConnection>,
    returned: bool,
}

impl Lane {
    /// A lane connection, or `None` when [`LANE`] are in use (the caller uses the pool).
    pub(crate) async fn take<'a>(&'a self, pool: &PgPool) -> Result<Option<Taken<'a>>, StoreError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some((mut conn, since)) = idle else { break };
            if since.elapsed() < crate::store::PING_IF_IDLE_FOR || conn.ping().await.is_ok() {
                return Ok(Some(Taken {
                    lane: self,
                    conn: Some(conn),
                    returned: false,
                }));
            }
            self.open.fetch_sub(1, Ordering::AcqRel);
        }
        if self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < LANE).then_some(n + 1)
            })
            .is_err()
        {
            return Ok(None);
        }
        let mut taken = Taken {
            lane: self,
            conn: None,
            returned: false,
        };
        // Counted before it exists: a failed open (or a caller gone meanwhile) uncounts it
        // when `taken` drops.
        taken.conn = Some(pool.acquire().await.map_err(db)?.detach());
        Ok(Some(taken))
    }
}

impl Taken<'_> {
    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("a taken lane connection is held until returned")
    }

    /// Returns the connection to the lane: call only after its statement was answered.
    pub(crate) fn back(mut self) {
        if let Some(conn) = self.conn.take() {
            self.returned = true;
            self.lane
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((conn, Instant::now()));
        }
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        // Not returned: an error, or the caller stopped waiting. The connection closes.
        if !self.returned {
            self.lane.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A connection for one statement: from the lane when it has one, else from the pool.
#[derive(Debug)]
pub(crate) enum Held<'a> {
    Lane(Taken<'a>),
    Pool(PoolConnection<Postgres>),
}

impl Held<'_> {
    /// A connection from `lane`, else from `pool`.
    pub(crate) async fn take<'a>(lane: &'a Lane, pool: &PgPool) -> Result<Held<'a>, StoreError> {
        Ok(match lane.take(pool).await? {
            Some(taken) => Held::Lane(taken),
            None => Held::Pool(pool.acquire().await.map_err(db)?),
        })
    }

    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        match self {
            Held::Lane(taken) => taken.conn(),
            Held::Pool(conn) => conn,
        }
    }

    /// Gives the connection back: call only once its statements were answered (dropped
    /// instead, a lane connection closes; a pool one goes back through sqlx's ping).
    pub(crate) fn back(self) {
        if let Held::Lane(taken) = self {
            taken.back();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::scratch_store;

    async fn pid(conn: &mut PgConnection) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await
            .expect("backend pid")
    }

    /// A lane connection, which the test expects the lane to have.
    async fn take<'a>(lane: &'a Lane, pool: &PgPool) -> Taken<'a> {
        lane.take(pool).await.unwrap().expect("a lane connection")
    }

    async fn alive(pool: &PgPool, pid: i32) -> bool {
        sqlx::query_scalar("SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_one(pool)
            .await
            .expect("pg_stat_activity")
    }

    #[tokio::test]
    async fn a_connection_given_back_is_taken_again_as_it_is() {
        let store = scratch_store().await;
        let lane = Lane::default();
        let mut a = take(&lane, store.pool()).await;
        let first = pid(a.conn()).await;
        a.back();
        let mut b = take(&lane, store.pool()).await;
        assert_eq!(pid(b.conn()).await, first, "the same connection, kept open");
        b.back();
        assert_eq!(lane.open.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    async fn beyond_the_lane_callers_use_the_pool() {
        let store = scratch_store().await;
        let lane = Lane::default();
        let mut held = Vec::new();
        for _ in 0..LANE {
            held.push(take(&lane, store.pool()).await);
        }
        assert!(
            lane.take(store.pool()).await.unwrap().is_none(),
            "the lane is full"
        );
        let mut other = Held::take(&lane, store.pool()).await.unwrap();
        assert!(matches!(other, Held::Pool(_)), "the pool serves the rest");
        let p = pid(other.conn()).await;
        other.back();
        let mut pids = Vec::new();
        for t in &mut held {
            pids.push(pid(t.conn()).await);
        }
        assert!(!pids.contains(&p), "lane connections are not the pool's");
    }

    #[tokio::test]
    async fn a_connection_not_given_back_is_closed_and_no_longer_counted() {
        let store = scratch_store().await;
        let lane = Lane::default();
        let mut held = Vec::new();
        for _ in 0..LANE {
            held.push(take(&lane, store.pool()).await);
        }
        let mut dropped = held.pop().expect("one");
        let gone = pid(dropped.conn()).await;
        // As when a statement failed, or its caller stopped waiting.
        drop(dropped);
        let mut next = take(&lane, store.pool()).await;
        assert_ne!(pid(next.conn()).await, gone, "a new connection");
        let mut closed = false;
        for _ in 0..200 {
            if !alive(store.pool(), gone).await {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(closed, "the dropped connection's backend ended");
    }

    #[tokio::test]
    async fn an_idle_connection_is_pinged_and_replaced_when_it_died() {
        let store = scratch_store().await;
        let lane = Lane::default();
        let mut a = take(&lane, store.pool()).await;
        let dead = pid(a.conn()).await;
        a.back();
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(dead)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(killed);
        // Idle long enough to be pinged before use.
        for (_, since) in lane.idle.lock().unwrap().iter_mut() {
            *since -= crate::store::PING_IF_IDLE_FOR;
        }
        let mut b = take(&lane, store.pool()).await;
        assert_ne!(pid(b.conn()).await, dead, "the dead one was not handed out");
        b.back();
        assert_eq!(
            lane.open.load(Ordering::Acquire),
            1,
            "the dead one is uncounted"
        );
    }
}
