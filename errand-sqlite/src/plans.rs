//! The plans of the hot statements: each uses the index (or id lookups) it was written for.
//! SQLite picks a partial index only when the query repeats its predicate's text, so a
//! predicate spelled differently from its index would silently scan the table.

#[cfg(test)]
mod tests {
    use errand_core::{JobState, ListFilter};

    use crate::list::where_clauses;
    use crate::outcome::{complete_sql, COMPLETED_BY_LEASE};
    use crate::prune::prune_sql;
    use crate::schedule::promote_sql;
    use crate::sql::LEASE_MATCH;
    use crate::SqliteStore;

    async fn plan(store: &SqliteStore, sql: &str) -> String {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
    }

    #[tokio::test]
    async fn hot_statements_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("p.db").to_str().unwrap())
            .await
            .unwrap();
        let p = plan(&store, &complete_sql(3)).await;
        assert!(
            p.contains("USING INTEGER PRIMARY KEY") && !p.contains("errand_jobs_lease"),
            "{p}"
        );
        let p = plan(
            &store,
            &format!("UPDATE errand_jobs SET lease_expires_at = 1 {LEASE_MATCH}"),
        )
        .await;
        assert!(
            p.contains("USING INTEGER PRIMARY KEY") && !p.contains("errand_jobs_lease"),
            "{p}"
        );
        // Finding which leases a partly stale batch completed: a lookup by id per lease,
        // not a scan of the completed jobs per lease (seconds for a batch of thousands).
        let p = plan(&store, COMPLETED_BY_LEASE).await;
        assert!(
            p.contains("USING INTEGER PRIMARY KEY") && !p.contains("errand_jobs_finalized"),
            "{p}"
        );
        assert!(plan(&store, &promote_sql())
            .await
            .contains("errand_jobs_due"));
        assert!(plan(&store, &prune_sql())
            .await
            .contains("errand_jobs_finalized"));
        // Each queue's oldest available job: from the claim index alone.
        let oldest = "SELECT queue, min(run_at) FROM errand_jobs WHERE state = 'available' \
                      GROUP BY queue ORDER BY queue";
        assert!(plan(&store, oldest).await.contains("errand_jobs_claim"));
        // The holder of a unique key (insert, retry): by the unique index, whose predicate
        // the lookup repeats word for word.
        let unique = format!(
            "SELECT id FROM errand_jobs WHERE unique_key = ? AND {}",
            errand_core::UNIQUE_HOLDS_SQL
        );
        assert!(plan(&store, &unique).await.contains("errand_jobs_unique"));
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            squash(include_str!("../migrations/0006_unique.sql"))
                .contains(&squash(errand_core::UNIQUE_HOLDS_SQL)),
            "the index predicate and UNIQUE_HOLDS_SQL differ"
        );
        // Lists and counts, one query per state group, each on the group's index.
        let filter = JobState::ALL
            .into_iter()
            .fold(ListFilter::new().queue("q"), |f, s| f.state(s));
        let clauses = where_clauses(&filter);
        assert_eq!(clauses.len(), errand_core::STATE_INDEX_GROUPS.len());
        for (clause, index) in clauses.iter().zip([
            "errand_jobs_pending",
            "errand_jobs_claim",
            "errand_jobs_lease",
            "errand_jobs_due",
            "errand_jobs_dead",
            "",
        ]) {
            let p = plan(&store, &format!("SELECT count(*) FROM errand_jobs{clause}")).await;
            if index.is_empty() {
                continue; // completed jobs have no index of their own
            }
            assert!(p.contains(index), "{clause}: {p}");
        }
    }
}
