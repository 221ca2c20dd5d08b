//! `errand dashboard`: the errand-web router served on its own.

use std::io::Write;
use std::net::SocketAddr;

use errand::AnyStore;

use crate::CliError;

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
