//! PostgreSQL down for 10 s in the middle of a run. The test starts a private cluster (its
//! own data directory and port, so stopping it disturbs no other test), runs a worker on it,
//! stops the server for 10 s, starts it again, and checks that the worker resumed by itself
//! and finished every job exactly once, and that its cron entry went on enqueueing one job
//! per tick.
#![cfg(all(feature = "postgres", feature = "sqlite"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use errand::store::Store;
use errand::{Client, JobOptions, JobState, ListFilter, PgStore};

/// A throwaway PostgreSQL cluster run as the `postgres` user.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

fn pg_bin() -> PathBuf {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(base)
        .unwrap_or_else(|e| {
            panic!("PostgreSQL server binaries not found under {base:?} ({e}): install postgresql")
        })
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("an installed PostgreSQL with initdb")
}

fn as_postgres(bin: &Path, tool: &str, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .args(args)
        .output()
        .expect("run runuser");
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    fn start_new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(chown.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bin = pg_bin();
        let d = data.to_str().unwrap();
        as_postgres(
            &bin,
            "initdb",
            &["-D", d, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let c = Cluster {
            bin,
            data,
            port,
            _dir: dir,
        };
        c.start();
        c
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        let d = self.data.to_str().unwrap();
        as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                d,
                "-o",
                &opts,
                "-w",
                "-l",
                &format!("{d}/log"),
                "start",
            ],
        );
    }

    fn stop(&self) {
        as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_resumes_after_postgres_is_down_for_10_s() {
    let cluster = Cluster::start_new();
    let store = PgStore::connect(&cluster.url()).await.unwrap();
    let client = Client::new(store.clone());
    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 4)
        .queue("cron", 1)
        .cron_with(
            "every-second",
            "* * * * * *",
            Echo { n: 0 },
            JobOptions::new().queue("cron"),
        )
        .build()
        .unwrap()
        .start();
    let ids: Vec<i64> = client
        .enqueue_many((0..400).map(|_| Sleeper { ms: 25 }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    wait_for(
        "some jobs done before the outage",
        Duration::from_secs(30),
        || async { probe.total() >= 50 },
    )
    .await;

    cluster.stop();
    // The outage itself lasts 10 s (a scenario length, not a wait for a condition).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = probe.total();
    cluster.start();
    let restarted = chrono::Utc::now();

    wait_for(
        "every job completed after the outage",
        Duration::from_secs(90),
        || async {
            store
                .count(
                    &ListFilter::new()
                        .queue("default")
                        .state(JobState::Completed),
                )
                .await
                .unwrap_or(0)
                == 400
        },
    )
    .await;
    let cron_done = || async {
        store
            .list(&ListFilter::new().queue("cron").state(JobState::Completed))
            .await
            .unwrap_or_default()
    };
    wait_for(
        "a cron tick after the restart ran",
        Duration::from_secs(30),
        || async { cron_done().await.iter().any(|r| r.run_at > restarted) },
    )
    .await;
    let report = worker.shutdown().await;
    assert_eq!(report.released, 0);
    let ticks = cron_done().await;
    let keys: std::collections::HashSet<_> = ticks.iter().map(|r| &r.unique_key).collect();
    assert_eq!(keys.len(), ticks.len(), "a tick ran twice: {ticks:?}");
    for t in &ticks {
        assert_eq!(
            probe.runs(t.id),
            1,
            "cron job {} ran {} times",
            t.id,
            probe.runs(t.id)
        );
    }
    for id in ids {
        assert_eq!(probe.runs(id), 1, "job {id} ran {} times", probe.runs(id));
    }
    eprintln!("outage: {} cron ticks ran once each around it", ticks.len());
    eprintln!("outage: {during} jobs had run when the server went down for 10 s; all 400 completed once afterwards");
}
