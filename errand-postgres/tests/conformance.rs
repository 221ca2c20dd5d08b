//! The store conformance suite on PostgreSQL (`DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/test), each case on its own schema.

async fn store() -> errand_postgres::PgStore {
    errand_postgres::testing::scratch_store().await
}

errand_testkit::store_conformance!(store);
