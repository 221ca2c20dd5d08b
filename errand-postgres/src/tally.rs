//! Jobs finished per minute (`tallies`), tallied from `jobs_finalized` since `tally_mark`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use errand_core::{earlier, MinuteCount, StoreError, TALLY_KEPT};
use sqlx::Row;

use crate::error::db;
use crate::store::PgStore;

pub(crate) async fn tally(
    s: &PgStore,
    upto: DateTime<Utc>,
    max_window: Duration,
) -> Result<u64, StoreError> {
    let sql = &s.inner.sql;
    // Idle first, without a transaction: when nothing finished since the mark, the mark
    // stays (the next tally reads this empty range again, cheaply, up to the window) and
    // an idle leader pays two reads per tally.
    let mark: Option<DateTime<Utc>> = sqlx::query(&sql.tally_mark_read)
        .fetch_optional(&s.inner.pool)
        .await
        .map_err(db)?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(db)?;
    let floor = earlier(upto, max_window);
    let from = mark.map_or(floor, |m| m.max(floor));
    if from >= upto {
        return Ok(0);
    }
    let any: bool = sqlx::query(&sql.tally_any)
        .bind(from)
        .bind(upto)
        .fetch_one(&s.inner.pool)
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    if !any {
        return Ok(0);
    }
    let mut tx = s.inner.pool.begin().await.map_err(db)?;
    // The mark row, locked: a second tally waits here and then starts where this one ends.
    sqlx::query(&sql.tally_mark_init)
        .bind(earlier(upto, max_window))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let mark: DateTime<Utc> = sqlx::query(&sql.tally_mark_lock)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    let from = mark.max(earlier(upto, max_window));
    let mut n = 0;
    if from < upto {
        let row = sqlx::query(&sql.tally_add)
            .bind(from)
            .bind(upto)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        n = row.try_get::<i64, _>(0).map_err(db)? as u64;
        sqlx::query(&sql.tally_mark_move)
            .bind(upto)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(&sql.tally_prune)
            .bind(earlier(upto, TALLY_KEPT))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(n)
}

pub(crate) async fn per_minute(
    s: &PgStore,
    since: DateTime<Utc>,
) -> Result<Vec<MinuteCount>, StoreError> {
    let rows = sqlx::query(&s.inner.sql.tallies)
        .bind(since)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let state: String = r.try_get(2).map_err(db)?;
            Ok(MinuteCount::new(
                r.try_get(0).map_err(db)?,
                r.try_get::<String, _>(1).map_err(db)?,
                StoreError::parse_state(0, &state)?,
                r.try_get::<i64, _>(3).map_err(db)? as u64,
            ))
        })
        .collect()
}
