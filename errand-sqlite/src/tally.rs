//! Jobs finished per minute (`errand_tallies`), tallied from `errand_jobs_finalized` since
//! `errand_tally_mark`, in one write transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use errand_core::{earlier, MinuteCount, StoreError, TALLY_KEPT};

use crate::error::db;
use crate::row::{micros, time};
use crate::store::SqliteStore;

pub(crate) async fn tally(
    s: &SqliteStore,
    upto: DateTime<Utc>,
    max_window: Duration,
) -> Result<u64, StoreError> {
    let floor = micros(earlier(upto, max_window));
    // Idle first, on the reader: when nothing finished since the mark, the mark stays (the
    // next tally reads this empty range again, cheaply, up to the window) and an idle
    // leader takes no write turn.
    let mark: Option<i64> =
        sqlx::query_scalar("SELECT upto FROM errand_tally_mark WHERE name = 'finished'")
            .fetch_optional(s.reader())
            .await
            .map_err(db)?;
    let from = mark.unwrap_or(floor).max(floor);
    let any: bool = from < micros(upto)
        && sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM errand_jobs \
             WHERE state IN ('completed', 'discarded', 'cancelled') \
               AND finalized_at > ?1 AND finalized_at <= ?2)",
        )
        .bind(from)
        .bind(micros(upto))
        .fetch_one(s.reader())
        .await
        .map_err(db)?;
    if !any {
        return Ok(0);
    }
    let w = s.writer().await?;
    let mut tx = w.begin().await?;
    let mark: Option<i64> =
        sqlx::query_scalar("SELECT upto FROM errand_tally_mark WHERE name = 'finished'")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    let from = mark.unwrap_or(floor).max(floor);
    let to = micros(upto);
    let mut n = 0;
    if from < to {
        // The predicate is errand_jobs_finalized's, so the tally reads that index's range.
        let counted: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT finalized_at - (finalized_at % 60000000), queue, state, count(*) FROM errand_jobs \
             WHERE state IN ('completed', 'discarded', 'cancelled') \
               AND finalized_at > ?1 AND finalized_at <= ?2 \
             GROUP BY 1, 2, 3",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        for (minute, queue, state, count) in &counted {
            sqlx::query(
                "INSERT INTO errand_tallies (minute, queue, state, n) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (minute, queue, state) DO UPDATE SET n = n + excluded.n",
            )
            .bind(minute)
            .bind(queue)
            .bind(state)
            .bind(count)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            n += *count as u64;
        }
        sqlx::query(
            "INSERT INTO errand_tally_mark (name, upto) VALUES ('finished', ?1) \
             ON CONFLICT (name) DO UPDATE SET upto = excluded.upto",
        )
        .bind(to)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM errand_tallies WHERE minute < ?1")
            .bind(micros(earlier(upto, TALLY_KEPT)))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(n)
}

pub(crate) async fn per_minute(
    s: &SqliteStore,
    since: DateTime<Utc>,
) -> Result<Vec<MinuteCount>, StoreError> {
    let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT minute, queue, state, n FROM errand_tallies WHERE minute >= ?1 \
         ORDER BY minute, queue, state",
    )
    .bind(micros(since))
    .fetch_all(s.reader())
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|(minute, queue, state, n)| {
            let minute = time(minute)
                .map_err(|e| StoreError::Database(format!("tally minute: {e}").into()))?;
            Ok(MinuteCount::new(
                minute,
                queue,
                StoreError::parse_state(0, &state)?,
                n as u64,
            ))
        })
        .collect()
}
