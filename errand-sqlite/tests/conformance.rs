//! The store conformance suite on SQLite: each case on its own fresh database file.

async fn store() -> errand_sqlite::SqliteStore {
    let path = errand_testkit::helpers::scratch_db_path();
    errand_sqlite::SqliteStore::open(path.to_str().unwrap())
        .await
        .expect("open SQLite store")
}

errand_testkit::store_conformance!(store);
