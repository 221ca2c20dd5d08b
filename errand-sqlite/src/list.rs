//! Reading jobs: one by id, lists and counts by filter (one query per state index group),
//! counts per queue and state.

use errand_core::{state_predicates, JobId, JobRow, JobState, ListFilter, StateCount, StoreError};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Row, Sqlite};

use crate::error::db;
use crate::row::{decode, COLUMNS};
use crate::store::SqliteStore;

pub(crate) async fn fetch(s: &SqliteStore, id: JobId) -> Result<Option<JobRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM errand_jobs WHERE id = ?");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(s.reader())
        .await
        .map_err(db)?
        .as_ref()
        .map(decode)
        .transpose()
}

pub(crate) async fn list(s: &SqliteStore, filter: &ListFilter) -> Result<Vec<JobRow>, StoreError> {
    let mut args = SqliteArguments::default();
    let mut selects: Vec<String> = where_clauses(filter)
        .into_iter()
        .map(|clause| {
            bind_filter(&mut args, filter);
            let mut sql = format!("SELECT {COLUMNS} FROM errand_jobs{clause}");
            if let Some(before) = filter.before_id {
                sql.push_str(" AND id < ?");
                args.add(before).expect("bind");
            }
            if let Some(after) = filter.after_id {
                sql.push_str(" AND id > ?");
                args.add(after).expect("bind");
            }
            sql.push_str(order(filter));
            sql.push_str(" LIMIT ?");
            args.add(filter.effective_limit()).expect("bind");
            sql
        })
        .collect();
    let sql = if selects.len() == 1 {
        selects.pop().expect("one")
    } else {
        // The first `limit` of each group, then the first `limit` of those.
        args.add(filter.effective_limit()).expect("bind");
        let parts: Vec<String> = selects
            .iter()
            .map(|s| format!("SELECT * FROM ({s})"))
            .collect();
        format!("{}{} LIMIT ?", parts.join(" UNION ALL "), order(filter))
    };
    let rows = sqlx::query_with::<Sqlite, _>(&sql, args)
        .fetch_all(s.reader())
        .await
        .map_err(db)?;
    rows.iter().map(decode).collect()
}

/// Newest first unless asked otherwise.
fn order(f: &ListFilter) -> &'static str {
    if f.oldest_first {
        " ORDER BY id ASC"
    } else {
        " ORDER BY id DESC"
    }
}

pub(crate) async fn count(s: &SqliteStore, filter: &ListFilter) -> Result<u64, StoreError> {
    let mut args = SqliteArguments::default();
    let parts: Vec<String> = where_clauses(filter)
        .into_iter()
        .map(|clause| {
            bind_filter(&mut args, filter);
            format!("SELECT count(*) AS n FROM errand_jobs{clause}")
        })
        .collect();
    let sql = format!("SELECT sum(n) FROM ({})", parts.join(" UNION ALL "));
    let row = sqlx::query_with::<Sqlite, _>(&sql, args)
        .fetch_one(s.reader())
        .await
        .map_err(db)?;
    Ok(row.try_get::<i64, _>(0).map_err(db)? as u64)
}

pub(crate) async fn count_up_to(
    s: &SqliteStore,
    filter: &ListFilter,
    cap: u64,
) -> Result<u64, StoreError> {
    let mut args = SqliteArguments::default();
    let parts: Vec<String> = where_clauses(filter)
        .into_iter()
        .map(|clause| {
            bind_filter(&mut args, filter);
            format!("SELECT 1 FROM errand_jobs{clause}")
        })
        .collect();
    // The cap is a number of ours, not input: written into the statement.
    let sql = format!(
        "SELECT count(*) FROM ({} LIMIT {})",
        parts.join(" UNION ALL "),
        capped(cap)
    );
    let row = sqlx::query_with::<Sqlite, _>(&sql, args)
        .fetch_one(s.reader())
        .await
        .map_err(db)?;
    Ok(row.try_get::<i64, _>(0).map_err(db)? as u64)
}

pub(crate) async fn state_counts_up_to(
    s: &SqliteStore,
    state: JobState,
    cap: u64,
) -> Result<Vec<StateCount>, StoreError> {
    let clause = where_clauses(&ListFilter::new().state(state)).join("");
    let sql = format!(
        "SELECT queue, count(*) FROM (SELECT queue FROM errand_jobs{clause} LIMIT {}) \
         GROUP BY queue ORDER BY queue",
        capped(cap)
    );
    let rows: Vec<(String, i64)> = sqlx::query_as(&sql)
        .fetch_all(s.reader())
        .await
        .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|(queue, count)| StateCount::new(queue, state, count as u64))
        .collect())
}

/// `cap + 1` as a row limit SQLite accepts.
fn capped(cap: u64) -> i64 {
    i64::try_from(cap.saturating_add(1)).unwrap_or(i64::MAX)
}

pub(crate) async fn stats(
    s: &SqliteStore,
    states: &[JobState],
) -> Result<Vec<StateCount>, StoreError> {
    let filter = states.iter().fold(ListFilter::new(), |f, &s| f.state(s));
    let parts: Vec<String> = where_clauses(&filter)
        .into_iter()
        .map(|clause| {
            format!("SELECT queue, state, count(*) FROM errand_jobs{clause} GROUP BY queue, state")
        })
        .collect();
    let sql = format!("{} ORDER BY 1, 2", parts.join(" UNION ALL "));
    let rows: Vec<(String, String, i64)> = sqlx::query_as(&sql)
        .fetch_all(s.reader())
        .await
        .map_err(db)?;
    rows.into_iter()
        .map(|(queue, state, count)| {
            Ok(StateCount::new(
                queue,
                StoreError::parse_state(0, &state)?,
                count as u64,
            ))
        })
        .collect()
}

/// `WHERE` clauses for a list filter: one per state index group the filter touches (so
/// each can use its group's partial index; see [`state_predicates`]), or a single one
/// without a state predicate. Each use of a clause binds its arguments with [`bind_filter`].
pub(crate) fn where_clauses(f: &ListFilter) -> Vec<String> {
    let mut rest = String::new();
    if f.queue.is_some() {
        rest.push_str(" AND queue = ?");
    }
    if f.kind.is_some() {
        rest.push_str(" AND kind = ?");
    }
    if f.tag.is_some() {
        rest.push_str(" AND EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ?)");
    }
    let preds = state_predicates(&f.states);
    if preds.is_empty() {
        return vec![format!(" WHERE 1 = 1{rest}")];
    }
    preds
        .into_iter()
        .map(|p| format!(" WHERE {p}{rest}"))
        .collect()
}

/// The arguments of one [`where_clauses`] clause, in order.
fn bind_filter(args: &mut SqliteArguments<'static>, f: &ListFilter) {
    if let Some(q) = &f.queue {
        args.add(q.clone()).expect("bind");
    }
    if let Some(k) = &f.kind {
        args.add(k.clone()).expect("bind");
    }
    if let Some(t) = &f.tag {
        args.add(t.clone()).expect("bind");
    }
}
