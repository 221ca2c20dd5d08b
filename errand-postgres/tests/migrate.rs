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
        assert_eq!(store.schema_version().await.unwrap(), (13, 13));
    }
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM \"{schema}\".errand_schema ORDER BY version"
    ))
    .fetch_all(base.pool())
    .await
    .unwrap();
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
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
                expected: 13,
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
    assert_eq!(store.schema_version().await.unwrap(), (13, 13));
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
            "jobs_keyed",
            "jobs_keyed_running",
            "jobs_lease",
            "jobs_pending",
            "jobs_pkey",
            "jobs_step",
            "jobs_unique"
        ]
    );
}

/// A schema at the previous version (5) with jobs and a limited queue upgrades to 6: the
/// rows stay (no partition key), the record keeps its limit and gains none, claims keep the
/// limit, and the new limits can be set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_5_schema_with_rows_upgrades_to_metered_queues() {
    use errand_core::{ClaimRequest, QueueLimits, Store};
    let base = scratch_store().await;
    let schema = format!("{}_v5", base.schema());
    let q = format!("\"{schema}\"");
    let mut sql = format!(
        "CREATE SCHEMA {q};
         CREATE TABLE {q}.errand_schema (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO {q}.errand_schema (version) VALUES (1), (2), (3), (4), (5);"
    );
    for m in [
        include_str!("../migrations/0001_jobs.sql"),
        include_str!("../migrations/0002_state_indexes.sql"),
        include_str!("../migrations/0003_queues.sql"),
        include_str!("../migrations/0004_results.sql"),
        include_str!("../migrations/0005_unique.sql"),
    ] {
        sql.push_str(&m.replace("{schema}", &q));
        sql.push_str(";\n");
    }
    sql.push_str(&format!(
        "INSERT INTO {q}.jobs (kind, queue, args, state, max_attempts, run_at, created_at)
         SELECT 'mail', 'mail', '{{}}', 'available', 5, now(), now() FROM generate_series(1, 5);
         INSERT INTO {q}.jobs (kind, queue, args, state, max_attempts, run_at, created_at,
                               attempt, attempted_at, lease_expires_at)
         VALUES ('mail', 'mail', '{{}}', 'running', 5, now(), now(), 1, now(), now() + interval '1 hour');
         INSERT INTO {q}.queues (name, max_running, updated_at) VALUES ('mail', 3, now());"
    ));
    sqlx::raw_sql(&sql).execute(base.pool()).await.unwrap();
    let store = PgStore::builder()
        .url(database_url())
        .schema(&schema)
        .open()
        .await
        .unwrap();
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
    let now = chrono::Utc::now();
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
    // A binary of version 5 claims through `claimable(queue, want)`: it now takes nothing
    // from a metered queue, and still counts a plain limit.
    let old_claimable = format!("SELECT {q}.claimable('mail', 10)");
    let n: i64 = sqlx::query_scalar(&old_claimable)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 0, "metered: nothing for an old binary");
    store
        .set_queue_limits("mail", &QueueLimits::default().max_running(9), now)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(&old_claimable)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 3, "9 minus the 6 running");
}
