//! Opening SQLite stores: inside spawned tasks, missing files, unmigrated files.

use errand_core::StoreError;
use errand_sqlite::SqliteStore;

/// Applications open stores inside spawned tasks: the future must be `Send + 'static`.
#[tokio::test]
async fn open_runs_inside_a_spawned_task() {
    let dir = tempfile::tempdir().unwrap();
    let url: &'static str =
        Box::leak(format!("sqlite://{}", dir.path().join("a.db").display()).into_boxed_str());
    let store = tokio::spawn(SqliteStore::open(url)).await.unwrap().unwrap();
    assert_eq!(store.schema_version().await.unwrap(), (13, 13));
}

#[tokio::test]
async fn missing_and_unmigrated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.db");
    let err = SqliteStore::builder(path.to_str().unwrap())
        .create_if_missing(false)
        .open()
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Missing(_)), "{err}");
    assert!(!path.exists());
    std::fs::write(&path, b"").unwrap();
    let err = SqliteStore::builder(path.to_str().unwrap())
        .migrate(false)
        .open()
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotMigrated { found: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("errand migrate"), "{err}");
}

/// A file made by the first release (schema version 1, indexes over every row) upgrades in
/// place when opened: its jobs stay, the old indexes go, the per-state ones come.
#[tokio::test]
async fn a_version_1_file_upgrades_and_keeps_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    sqlx::raw_sql(include_str!("../migrations/0001_jobs.sql"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE errand_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
         INSERT INTO errand_schema VALUES (1, datetime('now'));
         INSERT INTO errand_jobs (kind, queue, args, state, max_attempts, run_at, created_at)
         VALUES ('mail', 'default', '{\"to\":\"a\"}', 'available', 5, 0, 0),
                ('mail', 'default', '{\"to\":\"b\"}', 'completed', 5, 0, 0),
                ('mail', 'default', '{\"to\":\"c\"}', 'completed', 5, 0, 0);
         -- Job 3 was pruned: its id must never be handed out again.
         DELETE FROM errand_jobs WHERE id = 3;",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let unmigrated = SqliteStore::builder(path.to_str().unwrap())
        .migrate(false)
        .open()
        .await
        .unwrap_err();
    assert!(
        matches!(unmigrated, StoreError::NotMigrated { found: 1, .. }),
        "{unmigrated}"
    );
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), (13, 13));
    let job = errand_core::Store::get(&store, 1).await.unwrap().unwrap();
    assert_eq!(
        (job.kind.as_str(), job.args.as_str()),
        ("mail", "{\"to\":\"a\"}")
    );
    // Version 5's columns: an old row has no result or progress.
    assert_eq!(
        (&job.result, &job.progress, &job.corrupt),
        (&None, &None, &None)
    );
    // Version 3 rebuilt the table: the rows, the AUTOINCREMENT counter and the CHECK stay.
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM errand_jobs")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(count, 2);
    let now = chrono::Utc::now();
    let job = errand_core::NewJob {
        kind: "mail".into(),
        queue: "default".into(),
        args: "{}".into(),
        priority: 0,
        max_attempts: 5,
        run_at: now,
        tags: vec![],
        unique_key: None,
        unique_states: Default::default(),
        unique_for_ms: None,
        backoff: None,
        timeout_ms: None,
        partition_key: None,
    };
    let ids = errand_core::Store::insert(&store, vec![job], now)
        .await
        .unwrap();
    assert_eq!(ids[0].id, 4, "the id of the pruned job 3 is not reused");
    let bad = sqlx::query("UPDATE errand_jobs SET state = 'lost' WHERE id = 1")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("CHECK"), "{bad}");
    let indexes: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'errand_jobs_%' ORDER BY name",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let names: Vec<&str> = indexes.iter().map(|(n,)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "errand_jobs_claim",
            "errand_jobs_dead",
            "errand_jobs_due",
            "errand_jobs_finalized",
            "errand_jobs_keyed",
            "errand_jobs_keyed_running",
            "errand_jobs_lease",
            "errand_jobs_pending",
            "errand_jobs_step",
            "errand_jobs_unique"
        ]
    );
}

/// A file at the previous version (6) with jobs and a limited queue upgrades to 7: the rows
/// stay (no partition key), the record keeps its limit and gains none, claims keep the
/// limit, and the new limits can be set.
#[tokio::test]
async fn a_version_6_file_with_rows_upgrades_to_metered_queues() {
    use errand_core::{ClaimRequest, QueueLimits, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v6.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    let mut sql = String::from(
        "CREATE TABLE errand_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
         INSERT INTO errand_schema VALUES (1, 'x'), (2, 'x'), (3, 'x'), (4, 'x'), (5, 'x'), (6, 'x');",
    );
    for m in [
        include_str!("../migrations/0001_jobs.sql"),
        include_str!("../migrations/0002_state_indexes.sql"),
        include_str!("../migrations/0003_or_predicates.sql"),
        include_str!("../migrations/0004_queues.sql"),
        include_str!("../migrations/0005_results.sql"),
        include_str!("../migrations/0006_unique.sql"),
    ] {
        sql.push_str(m);
        sql.push_str(";\n");
    }
    let now = chrono::Utc::now();
    let us = now.timestamp_micros();
    sql.push_str(&format!(
        "INSERT INTO errand_jobs (kind, queue, args, state, max_attempts, run_at, created_at)
         VALUES ('mail', 'mail', '{{}}', 'available', 5, {us}, {us}),
                ('mail', 'mail', '{{}}', 'available', 5, {us}, {us}),
                ('mail', 'mail', '{{}}', 'available', 5, {us}, {us}),
                ('mail', 'mail', '{{}}', 'available', 5, {us}, {us}),
                ('mail', 'mail', '{{}}', 'available', 5, {us}, {us});
         INSERT INTO errand_jobs (kind, queue, args, state, max_attempts, run_at, created_at,
                                  attempt, attempted_at, lease_expires_at)
         VALUES ('mail', 'mail', '{{}}', 'running', 5, {us}, {us}, 1, {us}, {us} + 3600000000);
         INSERT INTO errand_queues (name, max_running, updated_at) VALUES ('mail', 3, {us});"
    ));
    sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
    pool.close().await;
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), (13, 13));
    let rec = store.queues().await.unwrap().remove(0);
    assert_eq!(
        rec.limits(),
        QueueLimits::default().max_running(3),
        "the limit is kept, none is added"
    );
    let jobs = store.list(&errand_core::ListFilter::new()).await.unwrap();
    assert_eq!(jobs.len(), 6);
    assert!(jobs.iter().all(|j| j.partition_key.is_none()));
    let req = |limit| ClaimRequest {
        queue: "mail".into(),
        limit,
        worker_id: "w".into(),
        now,
        lease: std::time::Duration::from_secs(60),
        held: None,
    };
    assert_eq!(
        store.claim(&req(10)).await.unwrap().len(),
        2,
        "one was running: two slots of three"
    );
    store
        .set_queue_limits("mail", &QueueLimits::default().max_per_key(1), now)
        .await
        .unwrap();
    assert_eq!(
        store.claim(&req(10)).await.unwrap().len(),
        3,
        "no limit but per key, and these jobs have no key"
    );
}
