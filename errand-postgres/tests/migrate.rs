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
        assert_eq!(store.schema_version().await.unwrap(), (1, 1));
    }
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM \"{schema}\".errand_schema ORDER BY version"
    ))
    .fetch_all(base.pool())
    .await
    .unwrap();
    assert_eq!(versions, vec![1], "each migration recorded once");
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
                expected: 1,
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
            matches!(err, StoreError::InvalidUrl { .. }),
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
