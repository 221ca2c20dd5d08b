//! `errand dashboard`: the errand-web router served on its own.

use std::io::Write;
use std::net::SocketAddr;

use errand::{AnyStore, StoreError};

use crate::open::is_postgres;
use crate::CliError;

/// Connections the dashboard may hold on Postgres (one per count it reads at once).
const PG_CONNECTIONS: u32 = 8;

/// The store the dashboard reads. On Postgres its connections carry a `statement_timeout`
/// of the dashboard's query timeout, so a page that gives up on a slow read also stops the
/// statement on the server instead of leaving it running.
pub(crate) async fn dashboard_store(url: &str, schema: &str) -> Result<AnyStore, CliError> {
    if !is_postgres(url) {
        return Ok(crate::open_store(url, schema, false).await?);
    }
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let bad = |e: sqlx::Error| StoreError::InvalidUrl {
        url: errand::store::redact_url(url),
        reason: e.to_string(),
    };
    let timeout = errand_web::Config::from_env()?.query_timeout_ms();
    let opts: PgConnectOptions = url.parse().map_err(bad)?;
    let opts = opts
        .application_name("errand-dashboard")
        .options([("statement_timeout", timeout.to_string())]);
    let pool = PgPoolOptions::new()
        .max_connections(PG_CONNECTIONS)
        .connect_lazy_with(opts);
    let store = errand::PgStore::builder()
        .pool(pool)
        .schema(schema)
        .migrate(false)
        .open()
        .await?;
    Ok(AnyStore::Postgres(store))
}

pub(crate) async fn dashboard(
    store: AnyStore,
    url: &str,
    bind: SocketAddr,
    read_only: bool,
    base_path: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut config = errand_web::Config::from_env()?;
    if read_only {
        config = config.read_only(true);
    }
    if !base_path.is_empty() {
        config = config.base_path(base_path);
    }
    let listener = errand_web::listen(bind, &config).await?;
    let addr = listener.local_addr()?;
    writeln!(
        out,
        "errand dashboard for {} on http://{addr}/ (Ctrl-C stops it)",
        errand::store::redact_url(url)
    )?;
    out.flush()?;
    errand_web::serve(listener, store, config, errand::shutdown_signal()).await?;
    Ok(())
}
