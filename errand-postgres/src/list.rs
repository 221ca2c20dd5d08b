//! Reading jobs: one by id, lists and counts by filter (one query per state index group),
//! counts per queue and state.

use errand_core::{state_predicates, JobId, JobRow, JobState, ListFilter, StateCount, StoreError};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, Postgres, Row};

use crate::error::db;
use crate::row::{decode, COLUMNS};
use crate::store::PgStore;

pub(crate) async fn fetch(s: &PgStore, id: JobId) -> Result<Option<JobRow>, StoreError> {
    sqlx::query(&s.inner.sql.get)
        .bind(id)
        .fetch_optional(&s.inner.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(decode)
        .transpose()
}

pub(crate) async fn list(s: &PgStore, filter: &ListFilter) -> Result<Vec<JobRow>, StoreError> {
    let (clauses, mut args, mut n) = where_clauses(filter);
    let mut before = String::new();
    if let Some(id) = filter.before_id {
        n += 1;
        before = format!(" AND id < ${n}");
        args.add(id).expect("bind");
    }
    if let Some(id) = filter.after_id {
        n += 1;
        before.push_str(&format!(" AND id > ${n}"));
        args.add(id).expect("bind");
    }
    let order = if filter.oldest_first { "ASC" } else { "DESC" };
    n += 1;
    args.add(i64::from(filter.effective_limit())).expect("bind");
    let table = &s.inner.sql.table;
    let selects: Vec<String> = clauses
        .iter()
        .map(|c| format!("SELECT {COLUMNS} FROM {table}{c}{before} ORDER BY id {order} LIMIT ${n}"))
        .collect();
    let sql = match selects.as_slice() {
        [one] => one.clone(),
        // The first `limit` of each group, then the first `limit` of those.
        _ => format!(
            "({}) ORDER BY id {order} LIMIT ${n}",
            selects.join(") UNION ALL (")
        ),
    };
    let rows = sqlx::query_with::<Postgres, _>(&sql, args)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
    rows.iter().map(decode).collect()
}

pub(crate) async fn count(s: &PgStore, filter: &ListFilter) -> Result<u64, StoreError> {
    let (clauses, args, _) = where_clauses(filter);
    let table = &s.inner.sql.table;
    let parts: Vec<String> = clauses
        .iter()
        .map(|c| format!("SELECT count(*) AS n FROM {table}{c}"))
        .collect();
    let sql = format!("SELECT sum(n)::int8 FROM ({}) c", parts.join(" UNION ALL "));
    let n: Option<i64> = sqlx::query_with::<Postgres, _>(&sql, args)
        .fetch_one(&s.inner.pool)
        .await
        .map_err(db)?
        .get(0);
    Ok(n.unwrap_or(0) as u64)
}

pub(crate) async fn count_up_to(
    s: &PgStore,
    filter: &ListFilter,
    cap: u64,
) -> Result<u64, StoreError> {
    let (clauses, args, _) = where_clauses(filter);
    let table = &s.inner.sql.table;
    let parts: Vec<String> = clauses
        .iter()
        .map(|c| format!("SELECT 1 FROM {table}{c}"))
        .collect();
    // The cap is a number of ours, not input: written into the statement.
    let sql = format!(
        "SELECT count(*) FROM ({} LIMIT {}) c",
        parts.join(" UNION ALL "),
        capped(cap)
    );
    let n: i64 = sqlx::query_with::<Postgres, _>(&sql, args)
        .fetch_one(&s.inner.pool)
        .await
        .map_err(db)?
        .get(0);
    Ok(n as u64)
}

pub(crate) async fn state_counts_up_to(
    s: &PgStore,
    state: JobState,
    cap: u64,
) -> Result<Vec<StateCount>, StoreError> {
    let (clauses, _, _) = where_clauses(&ListFilter::new().state(state));
    let table = &s.inner.sql.table;
    let sql = format!(
        "SELECT queue, count(*) FROM (SELECT queue FROM {table}{} LIMIT {}) c
         GROUP BY queue ORDER BY queue",
        clauses.join(""),
        capped(cap)
    );
    let rows = sqlx::query(&sql)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .map(|r| StateCount::new(r.get::<String, _>(0), state, r.get::<i64, _>(1) as u64))
        .collect())
}

/// `cap + 1` as a row limit Postgres accepts.
fn capped(cap: u64) -> i64 {
    i64::try_from(cap.saturating_add(1)).unwrap_or(i64::MAX)
}

pub(crate) async fn stats(s: &PgStore, states: &[JobState]) -> Result<Vec<StateCount>, StoreError> {
    let filter = states.iter().fold(ListFilter::new(), |f, &s| f.state(s));
    let (clauses, _, _) = where_clauses(&filter);
    let table = &s.inner.sql.table;
    let parts: Vec<String> = clauses
        .iter()
        .map(|c| format!("SELECT queue, state, count(*) FROM {table}{c} GROUP BY queue, state"))
        .collect();
    let sql = format!("{} ORDER BY 1, 2", parts.join(" UNION ALL "));
    let rows = sqlx::query(&sql)
        .fetch_all(&s.inner.pool)
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let state: String = r.get(1);
            Ok(StateCount::new(
                r.get::<String, _>(0),
                StoreError::parse_state(0, &state)?,
                r.get::<i64, _>(2) as u64,
            ))
        })
        .collect()
}

/// `WHERE` clauses for a list filter: one per state index group the filter touches (so
/// each can use its group's partial index; see [`state_predicates`]), or a single one
/// without a state predicate. Queue and kind are bound once as `$1…` and shared by every
/// clause; returns the clauses, the arguments and how many were bound.
fn where_clauses(f: &ListFilter) -> (Vec<String>, PgArguments, usize) {
    let mut rest = String::new();
    let mut args = PgArguments::default();
    let mut n = 0;
    if let Some(q) = &f.queue {
        n += 1;
        rest.push_str(&format!(" AND queue = ${n}"));
        args.add(q.clone()).expect("bind");
    }
    if let Some(k) = &f.kind {
        n += 1;
        rest.push_str(&format!(" AND kind = ${n}"));
        args.add(k.clone()).expect("bind");
    }
    if let Some(t) = &f.tag {
        n += 1;
        // Containment of a one-element array: a string element equal to the tag.
        rest.push_str(&format!(" AND tags @> jsonb_build_array(${n}::text)"));
        args.add(t.clone()).expect("bind");
    }
    let preds = state_predicates(&f.states);
    let clauses = if preds.is_empty() {
        vec![format!(" WHERE true{rest}")]
    } else {
        preds
            .into_iter()
            .map(|p| format!(" WHERE {p}{rest}"))
            .collect()
    };
    (clauses, args, n)
}
