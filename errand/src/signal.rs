//! The signal that starts a graceful shutdown, as deployments send it.

/// Completes when the process is asked to stop: `SIGTERM` (what containers, systemd and
/// Kubernetes send) or `SIGINT` (Ctrl-C); on other platforms Ctrl-C. Pass it to
/// [`Worker::run_until`](crate::Worker::run_until) so either starts errand's graceful
/// shutdown; a process that ignores `SIGTERM` is killed later and every job it held waits a
/// whole lease before another worker takes it. See `docs/deploying.md`.
///
/// ```no_run
/// # use errand::{Job, JobContext, JobError, Outcome, SqliteStore, Worker};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct SendEmail { to: String }
/// # impl Job for SendEmail {
/// #     const KIND: &'static str = "send_email";
/// #     type State = ();
/// #     async fn run(self, _: JobContext<()>) -> Result<Outcome, JobError> { Ok(Outcome::Complete) }
/// # }
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteStore::open("errand.db").await?;
/// let report = Worker::builder(store, ())
///     .register::<SendEmail>()
///     .queue("default", 10)
///     .build()?
///     .run_until(errand::shutdown_signal())
///     .await?;
/// println!("stopped; {} jobs returned to their queues", report.released);
/// # Ok(()) }
/// ```
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received: shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received: shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
