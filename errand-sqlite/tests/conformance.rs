//! The store conformance suite on SQLite: each case on its own fresh database file.

async fn store() -> errand_sqlite::SqliteStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.keep().join("errand.db");
    errand_sqlite::SqliteStore::open(path.to_str().unwrap())
        .await
        .expect("open SQLite store")
}

errand_testkit::store_conformance!(store);
