//! The `LISTEN` connection: turns `NOTIFY`s from any process into in-process wake-ups of the
//! right queue's producer. It has its own connection (not one of the pool's) and reconnects
//! with backoff after losing it. Whenever it starts listening (first time or after a
//! reconnect) it wakes every queue, since notifications sent before were not heard.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::store::Inner;

pub(crate) async fn run(inner: Weak<Inner>, opts: PgConnectOptions, channel: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen(&inner, &opts, &channel).await {
            Ok(()) => return, // the store is gone
            Err(e) => {
                if let Some(i) = inner.upgrade() {
                    i.listening.store(false, Ordering::SeqCst);
                }
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "errand LISTEN connection failed; polling until it is back");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        match inner.upgrade() {
            Some(i) => i.signals.notify_all(),
            None => return,
        }
    }
}

async fn listen(
    inner: &Weak<Inner>,
    opts: &PgConnectOptions,
    channel: &str,
) -> Result<(), sqlx::Error> {
    // Named after the pool's connections, so operators can tell whose listener it is.
    let name = match opts.get_application_name() {
        Some(app) => format!("{app}:listen"),
        None => format!("errand:{}:listen", std::process::id()),
    };
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(opts.clone().application_name(&name))
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(channel).await?;
    tracing::debug!(channel, "errand listening for job notifications");
    // Jobs inserted before LISTEN took effect sent notifications nobody heard: look once.
    // From here on this process's own inserts are heard too, and need no in-process wake.
    match inner.upgrade() {
        Some(i) => {
            i.listening.store(true, Ordering::SeqCst);
            i.signals.notify_all()
        }
        None => return Ok(()),
    }
    loop {
        let next = listener.try_recv().await?;
        let Some(inner) = inner.upgrade() else {
            return Ok(());
        };
        match next {
            Some(n) if n.payload().is_empty() => inner.signals.notify_scheduled(),
            Some(n) if n.payload() == crate::sql::CONTROLS_PAYLOAD => {
                inner.signals.notify_controls()
            }
            Some(n) if n.payload() == crate::sql::ENDED_PAYLOAD => inner.signals.notify_ended(),
            Some(n) => inner.signals.notify(n.payload()),
            // Reconnected: anything sent while we were away is lost; wake everyone.
            None => inner.signals.notify_all(),
        }
    }
}
