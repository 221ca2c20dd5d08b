//! `errand::connect` opens each store by its URL, and `AnyStore` keeps the store contract
//! (the conformance suite runs on it over SQLite) and runs jobs end to end on each.
#![cfg(feature = "sqlite")]

mod common;

use common::*;
use errand::{AnyStore, Client, JobState, StoreError};

async fn store() -> AnyStore {
    let path = errand_testkit::helpers::scratch_db_path();
    errand::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

errand_testkit::store_conformance!(store);

async fn runs_a_job(url: &str, kind: &str) {
    let store = errand::connect(url).await.unwrap();
    assert_eq!(store.kind(), kind);
    let id = Client::new(store.clone())
        .enqueue(Echo { n: 1 })
        .await
        .unwrap()
        .id;
    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 1)
        .build()
        .unwrap()
        .start();
    wait_state(&store, id, JobState::Completed).await;
    worker.shutdown().await;
    assert_eq!(probe.runs(id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_each_store_by_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain.db");
    runs_a_job(file.to_str().unwrap(), "sqlite").await;
    runs_a_job(
        &format!("sqlite://{}", dir.path().join("url.db").display()),
        "sqlite",
    )
    .await;
    runs_a_job("memory://", "memory").await;
    #[cfg(feature = "postgres")]
    {
        // Schema `errand` of the test database: opened (and migrated), not worked on.
        let pg = errand::connect(&errand_postgres::testing::database_url())
            .await
            .unwrap();
        assert_eq!(pg.kind(), "postgres");
        assert!(pg.as_postgres().is_some() && pg.as_sqlite().is_none());
        errand::store::Store::count(&pg, &errand::ListFilter::new())
            .await
            .unwrap();
    }
    match errand::connect("mysql://u:secret@h/db").await {
        Err(StoreError::InvalidUrl { url, reason }) => {
            assert!(!url.contains("secret"), "{url}");
            assert!(
                reason.contains("sqlite://") && reason.contains("memory://"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}
