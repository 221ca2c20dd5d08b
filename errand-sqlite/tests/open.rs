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
    assert_eq!(store.schema_version().await.unwrap(), (1, 1));
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
