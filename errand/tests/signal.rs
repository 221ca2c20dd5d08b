//! `errand::shutdown_signal` completes on SIGTERM, as containers and service managers stop
//! processes (its own test binary: it sends SIGTERM to this process).
#![cfg(unix)]

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_completes_the_shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    // Our own listener first, so that a SIGTERM sent before errand's is registered never
    // takes the default action (ending this process).
    let _guard = signal(SignalKind::terminate()).unwrap();
    let mut stopped = tokio::spawn(errand::shutdown_signal());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        if tokio::time::timeout(Duration::from_millis(200), &mut stopped)
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "shutdown_signal did not complete on SIGTERM"
        );
    }
}
