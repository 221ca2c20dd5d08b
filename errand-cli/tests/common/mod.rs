//! Databases and worker processes for the CLI's process-level tests.
#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use errand::store::Store;
use errand::AnyStore;
use errand::{JobState, ListFilter};
use errand_cli::chaos::Ledger;

/// A scratch database and the CLI arguments that name it.
pub struct Db {
    pub backend: AnyStore,
    pub args: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("errand.db").display());
        let backend = errand_cli::open_store(&url, "errand", true).await.unwrap();
        Db {
            backend,
            args: vec!["--database-url".into(), url],
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Db {
        let store = errand_postgres::testing::scratch_store().await;
        let args = vec![
            "--database-url".into(),
            errand_postgres::testing::database_url(),
            "--schema".into(),
            store.schema().to_owned(),
        ];
        Db {
            backend: AnyStore::Postgres(store),
            args,
            _dir: None,
        }
    }

    pub fn store(&self) -> std::sync::Arc<dyn Store> {
        std::sync::Arc::new(self.backend.clone())
    }

    pub async fn ledger(&self) -> Ledger {
        let l = Ledger::of(&self.backend);
        l.ensure().await.unwrap();
        l
    }

    /// `errand chaos-worker` on this database with `extra` arguments, its output dropped.
    pub fn worker_command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_errand"));
        cmd.args(&self.args)
            .arg("chaos-worker")
            .args(extra)
            .stdout(Stdio::null());
        cmd
    }

    /// Starts `errand chaos-worker` on this database; killed when dropped.
    pub fn worker(&self, extra: &[&str]) -> Worker {
        Worker(
            self.worker_command(extra)
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start worker process"),
        )
    }

    /// Runs `n` worker processes (concurrency 10, polling every 100 ms) until the store has
    /// nothing left to run, and asserts that each exited cleanly within `limit`.
    pub async fn run_until_done(&self, n: usize, limit: Duration) {
        let mut children: Vec<Worker> = (0..n)
            .map(|_| {
                self.worker(&[
                    "--concurrency",
                    "10",
                    "--poll-ms",
                    "100",
                    "--exit-when-done",
                ])
            })
            .collect();
        for child in &mut children {
            let status = wait_exit(child, limit).await;
            assert!(status.success(), "worker exited with {status}");
        }
    }

    /// Runs the `errand` binary with `args` on this database.
    pub fn errand(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_errand"))
            .args(&self.args)
            .args(args)
            .output()
            .expect("run errand")
    }

    pub async fn count(&self, state: JobState) -> u64 {
        self.store()
            .count(&ListFilter::new().state(state))
            .await
            .unwrap()
    }
}

/// Waits for a child to exit, killing it and failing after `limit`.
pub async fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("worker process did not finish within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A worker process killed when dropped: a test that fails while workers run (a panic in
/// `wait_exit` on one of them, or an assertion) leaves none behind.
pub struct Worker(pub Child);

impl std::ops::Deref for Worker {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
