//! Migrations on Postgres: concurrent processes migrate a schema once; an unmigrated schema
//! is refused with instructions.

use errand_core::StoreError;
use errand_postgres::testing::{database_url, scratch_store};
use errand_postgres::PgStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_once() {
    let base = scratch_store().await; // cleans stale schemas and names a unique prefix
    let schema = format!("{}_race", base.schema());
    let opens = (0..6).map(|_| {
        let schema = schema.clone();
        tokio::spawn(async move {
            PgStore::builder()
                .url(database_url())
                .schema(schema)
                .max_connections(2)
                .open()
                .await
        })
    });
    for task in opens {
        let store = task
            .await
            .unwrap()
            .expect("every concurrent open migrates or finds it done");
        assert_eq!(store.schema_version().await.unwrap(), (5, 5));
    }
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM \"{schema}\".errand_schema ORDER BY version"
    ))
    .fetch_all(base.pool())
    .await
    .unwrap();
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5],
        "each migration recorded once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmigrated_schema_is_refused_with_instructions() {
    let base = scratch_store().await;
    let err = PgStore::builder()
        .url(database_url())
        .schema(format!("{}_bare", base.schema()))
        .migrate(false)
        .open()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotMigrated {
                found: 0,
                expected: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("errand migrate"), "{err}");
}

#[tokio::test]
async fn bad_schema_names_and_urls_are_refused() {
    for schema in ["", "Bad", "1abc", "a-b", "x\"; drop"] {
        let err = PgStore::builder()
            .url(database_url())
            .schema(schema)
            .open()
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidSchema { .. }),
            "{schema}: {err}"
        );
    }
    let err = PgStore::connect("postgres://user@host:notaport/db")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid database url"), "{err}");
}

/// Applications open stores inside spawned tasks: the futures must be `Send + 'static`.
#[tokio::test]
async fn connect_runs_inside_a_spawned_task() {
    let store = tokio::spawn(PgStore::connect(Box::leak(database_url().into_boxed_str())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.schema(), "errand");
}

/// A schema made by the first release (version 1, indexes over every row) upgrades in place:
/// its jobs stay, the old indexes go, the per-state ones come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_upgrades_and_keeps_its_jobs() {
    let base = scratch_store().await;
    let schema = format!("{}_v1", base.schema());
    let q = format!("\"{schema}\"");
    let v1 = include_str!("../migrations/0001_jobs.sql").replace("{schema}", &q);
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA {q};
         CREATE TABLE {q}.errand_schema (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO {q}.errand_schema (version) VALUES (1);
         {v1};
         INSERT INTO {q}.jobs (kind, queue, args, state, max_attempts, run_at, created_at)
         VALUES ('mail', 'default', '{{\"to\": \"a\"}}', 'available', 5, now(), now());"
    ))
    .execute(base.pool())
    .await
    .unwrap();
    let refused = PgStore::builder()
        .url(database_url())
        .schema(&schema)
        .migrate(false)
        .open()
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::NotMigrated { found: 1, .. }),
        "{refused}"
    );
    let store = PgStore::builder()
        .url(database_url())
        .schema(&schema)
        .open()
        .await
        .unwrap();
    assert_eq!(store.schema_version().await.unwrap(), (5, 5));
    let jobs = errand_core::Store::list(&store, &errand_core::ListFilter::new())
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].kind, "mail");
    // Version 4's and 5's columns: an old row has no result or progress, and holds a
    // unique key (none here) in the states that are not final, as before.
    assert_eq!((&jobs[0].result, &jobs[0].progress), (&None, &None));
    assert_eq!(jobs[0].unique_states, errand_core::UniqueStates::NOT_FINAL);
    assert_eq!(jobs[0].corrupt, None);
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = 'jobs' ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "jobs_claim",
            "jobs_dead",
            "jobs_due",
            "jobs_finalized",
            "jobs_lease",
            "jobs_pkey",
            "jobs_unique"
        ]
    );
}
