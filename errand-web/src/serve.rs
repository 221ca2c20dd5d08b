//! Serving the dashboard on its own (what `errand dashboard` does), refusing to expose an
//! unauthenticated dashboard beyond this machine.

use std::future::Future;
use std::net::SocketAddr;

use errand::store::Store;
use tokio::net::TcpListener;

use crate::Config;

/// Why the dashboard could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// An address other than loopback with no authentication configured.
    #[error(
        "refusing to serve the dashboard on {addr} without authentication: anyone who reaches \
         it could retry, cancel and delete jobs. Bind 127.0.0.1 (the default), or set \
         ERRAND_DASHBOARD_USER and ERRAND_DASHBOARD_PASSWORD (basic authentication) or \
         ERRAND_DASHBOARD_TOKEN (bearer token)"
    )]
    OpenWithoutAuth {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("the dashboard server failed: {0}")]
    Serve(std::io::Error),
}

/// Refuses an address other than loopback when `config` has no authentication.
pub fn check_bind(addr: SocketAddr, config: &Config) -> Result<(), ServeError> {
    if !addr.ip().is_loopback() && !config.requires_auth() {
        return Err(ServeError::OpenWithoutAuth { addr });
    }
    Ok(())
}

/// Binds `addr` for the dashboard, after [`check_bind`].
pub async fn listen(addr: SocketAddr, config: &Config) -> Result<TcpListener, ServeError> {
    check_bind(addr, config)?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves the dashboard for `store` on `listener` until `shutdown` completes. Checks the
/// listener's address like [`check_bind`].
pub async fn serve<S: Store>(
    listener: TcpListener,
    store: S,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    check_bind(addr, &config)?;
    axum::serve(listener, crate::router(store, config))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[test]
    fn an_open_address_needs_authentication() {
        let open: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let lo6: SocketAddr = "[::1]:9090".parse().unwrap();
        let none = Config::new();
        assert!(check_bind(lo, &none).is_ok());
        assert!(check_bind(lo6, &none).is_ok());
        let err = check_bind(open, &none).unwrap_err().to_string();
        assert!(err.contains("ERRAND_DASHBOARD_USER"), "{err}");
        assert!(check_bind(open, &Config::new().token("t", Role::Operator)).is_ok());
        assert!(check_bind(open, &Config::new().upstream_auth()).is_ok());
    }
}
