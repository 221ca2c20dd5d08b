//! Scratch schemas for tests (errand's own and applications'): each store gets a schema of
//! its own, and schemas left by test processes that have exited are dropped.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::PgStore;

/// The database tests use: `DATABASE_URL`, or the local default.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A migrated store on a fresh schema `errand_t_<pid>_<n>`. Panics with instructions when
/// the database cannot be reached: Postgres tests never skip silently.
pub async fn scratch_store() -> PgStore {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let url = database_url();
    let schema = format!("errand_t_{}_{n}", std::process::id());
    let store = PgStore::builder()
        .url(&url)
        .schema(schema)
        .max_connections(5)
        .open()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Postgres tests need a database at {url} (set DATABASE_URL to change it): {e}\n\
                 Start the local server with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
            )
        });
    if n == 0 {
        drop_stale_schemas(&store).await;
    }
    store
}

/// Drops `errand_t_<pid>_*` schemas whose process is gone.
async fn drop_stale_schemas(store: &PgStore) {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'errand\\_t\\_%'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap_or_default();
    for s in schemas {
        let pid = s.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE"))
                .execute(store.pool())
                .await;
        }
    }
}

/// The SQL text of one of the store's statements (`"finish"`, `"finish_lean"`,
/// `"finish_completions"`, `"extend"`, `"release"`,
/// `"claim"`, `"claim_from"`, `"claim_metered"`, `"rescue"`), for plan tests.
pub fn statement(store: &PgStore, which: &str) -> String {
    let sql = &store.inner.sql;
    match which {
        "claim" => sql.claim.clone(),
        "claim_from" => sql.claim_from.clone(),
        "claim_metered" => sql.claim_metered.clone(),
        "rescue" => sql.rescue.clone(),
        "finish" => sql.finish.clone(),
        "finish_lean" => sql.finish_lean.clone(),
        "finish_completions" => sql.finish_completions.clone(),
        "extend" => sql.extend.clone(),
        "release" => sql.release.clone(),
        other => panic!("no statement named {other}"),
    }
}

/// Where this process's next claim of `queue` starts, as `(priority, run_at, id)`: `None`
/// when it walks from the front (see the crate's `claim_floor.rs`).
pub fn claim_floor(
    store: &PgStore,
    queue: &str,
) -> Option<(i16, chrono::DateTime<chrono::Utc>, i64)> {
    store
        .inner
        .floors
        .get(queue)
        .map(|k| (k.priority, k.run_at, k.id))
}
