//! Driver errors as store errors: what the server refused, and why it could not be reached,
//! each saying what to do.

use std::str::FromStr;

use errand_core::{redact_url, scrub, StoreError};
use sqlx::postgres::PgConnectOptions;

/// A driver error as a store error: the server refusing the data (SQLSTATE class 22, data
/// exception, or 23, integrity constraint) is [`StoreError::Rejected`]; the rest, outages
/// and lock or serialization failures among them, may pass on a retry.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    let refused = match &e {
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
        _ => false,
    };
    if refused {
        StoreError::rejected(e)
    } else {
        StoreError::database(e)
    }
}

/// How long opening a store waits for the server to answer one connection attempt.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One connection, made and closed, so that an unreachable, full or refusing server is
/// reported at once with its own cause.
pub(crate) async fn probe(opts: &PgConnectOptions, url: &str) -> Result<(), StoreError> {
    use sqlx::{ConnectOptions, Connection};
    match tokio::time::timeout(CONNECT_TIMEOUT, opts.connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(unreachable_db(url, e)),
        Err(_) => Err(StoreError::Database(
            format!(
                "cannot reach PostgreSQL at {}: no answer within {} s (a firewall, a wrong \
                 host, or a server that is stopped or frozen)",
                redact_url(url),
                CONNECT_TIMEOUT.as_secs()
            )
            .into(),
        )),
    }
}

/// A failure to connect as a store error that names the server (password redacted) and
/// says what to do about the cause it reports.
pub(crate) fn unreachable_db(url: &str, e: sqlx::Error) -> StoreError {
    let shown = redact_url(url);
    let text = scrub(&e.to_string(), url);
    let message = match &e {
        sqlx::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            format!(
                "cannot reach PostgreSQL at {shown}: {text}. Is it running? (on Debian: \
                 pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)"
            )
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
            format!("cannot reach PostgreSQL at {shown}: {text}")
        }
        sqlx::Error::Database(d) => match d.code().as_deref() {
            Some("3D000") => {
                let o = PgConnectOptions::from_str(url).ok();
                let db = o
                    .as_ref()
                    .and_then(|o| o.get_database())
                    .unwrap_or("the database");
                let (host, port, user) = o.as_ref().map_or(("localhost", 5432, "postgres"), |o| {
                    (o.get_host(), o.get_port(), o.get_username())
                });
                return StoreError::Missing(format!(
                    "PostgreSQL at {shown} answered: {}. Create the database first (errand \
                     migrate creates errand's tables, not databases): \
                     createdb -h {host} -p {port} -U {user} {db}",
                    scrub(d.message(), url)
                ));
            }
            // too_many_connections: the server's max_connections, or a role's limit.
            Some("53300") => format!(
                "PostgreSQL at {shown} refused the connection: {text}. The server (or this \
                 role) has no connection slot free: close idle clients, lower the pools' sizes \
                 (PgStore::builder().max_connections), or raise max_connections"
            ),
            Some("57P03") => format!(
                "PostgreSQL at {shown} is starting up or shutting down: {text}. Try again shortly"
            ),
            Some(c) if c.starts_with("28") => format!(
                "PostgreSQL at {shown} refused the login: {text}. Check the user and password \
                 in the URL and the server's pg_hba.conf"
            ),
            _ => format!("PostgreSQL at {shown} refused the connection: {text}"),
        },
        _ => format!("cannot connect to PostgreSQL at {shown}: {text}"),
    };
    StoreError::Database(message.into())
}
