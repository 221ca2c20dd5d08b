//! The store conformance suite on the in-memory store.

async fn store() -> errand::MemoryStore {
    errand::MemoryStore::new()
}

errand_testkit::store_conformance!(store);
