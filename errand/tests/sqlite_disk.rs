//! SQLite under a full disk and a file removed under the worker (issue 12, section 7).
//! The disk-full test mounts a small tmpfs: it needs root (as CI and the dev machines run)
//! and fails saying so otherwise.
#![cfg(feature = "sqlite")]

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use errand::store::Store;
use errand::{Client, JobState, SqliteStore};

/// A tmpfs of `mb` megabytes, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mb: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a {mb} MB tmpfs to fill a disk and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_leaves_no_connection_mid_transaction() {
    let disk = SmallDisk::mount(6);
    let path = disk.path().join("errand.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let client = Client::new(store.clone());
    let ids: Vec<_> = client
        .enqueue_many((0..300).map(|n| Echo { n }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    // Empty the WAL so that every write from here on needs new space.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(store.pool())
        .await
        .unwrap();
    let filler = disk.fill();
    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 8)
        .lease(Duration::from_secs(2))
        .build()
        .unwrap()
        .start();
    // Let the worker meet the full disk for a while: claims, outcomes and heartbeats fail.
    let full_since = tokio::time::Instant::now();
    let mut failures = 0;
    while full_since.elapsed() < Duration::from_secs(2) {
        if let Err(e) = store.retry_now(ids[0], chrono::Utc::now()).await {
            failures += 1;
            if failures == 1 {
                println!("disk full: first failure: {e}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_file(&filler).unwrap();
    // Space is back: every job completes, once.
    for &id in &ids {
        wait_state_within(&store, id, JobState::Completed, Duration::from_secs(60)).await;
    }
    worker.shutdown().await;
    assert!(ids.iter().all(|&id| probe.runs(id) >= 1));
    // And every pooled connection can open a write transaction again: each of these
    // passes takes one (a connection left mid-transaction fails them for good).
    for pass in 0..40 {
        store
            .rescue_expired(chrono::Utc::now(), 10)
            .await
            .unwrap_or_else(|e| panic!("pass {pass} after space was freed: {e}"));
        store.retry_now(ids[0], chrono::Utc::now()).await.unwrap();
    }
    println!("disk full: {failures} writes failed while full");
    assert!(failures > 0, "the disk never filled up");
}

/// Runs a worker on a fresh SQLite file, does `damage` to the file once jobs run, and
/// returns what `run_until` ended with.
async fn worker_after(
    damage: impl FnOnce(&Path),
) -> Result<errand::ShutdownReport, errand::WorkerError> {
    let (store, dir) = sqlite().await;
    let path = store.path().to_owned();
    let client = Client::new(store.clone());
    let first = client.enqueue(Echo { n: 0 }).await.unwrap().id;
    let probe = Probe::default();
    let worker = builder(store.clone(), probe.clone())
        .queue("default", 2)
        .build()
        .unwrap();
    let run = tokio::spawn(worker.run_until(std::future::pending::<()>()));
    wait_for("the first job to run", Duration::from_secs(10), || async {
        probe.runs(first) == 1
    })
    .await;
    damage(&path);
    let ended = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the worker stops by itself within 10 s")
        .unwrap();
    drop(dir);
    ended
}

fn stopped_because(ended: Result<errand::ShutdownReport, errand::WorkerError>) -> String {
    match ended {
        Err(errand::WorkerError::StoreLost { reason, .. }) => reason,
        other => panic!("expected the worker to stop with StoreLost, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_file_stops_the_worker_with_a_clear_error() {
    let reason = stopped_because(
        worker_after(|path| {
            std::fs::remove_file(path).unwrap();
        })
        .await,
    );
    assert!(
        reason.contains("was deleted while errand had it open"),
        "{reason}"
    );
    assert!(reason.contains("restore the file"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_replaced_database_file_stops_the_worker() {
    let reason = stopped_because(
        worker_after(|path| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(0)
                .unwrap();
        })
        .await,
    );
    assert!(reason.contains("was truncated to 0 bytes"), "{reason}");
    let reason = stopped_because(
        worker_after(|path| {
            let other = path.with_extension("other");
            std::fs::write(&other, vec![0u8; 4096]).unwrap();
            std::fs::rename(&other, path).unwrap();
        })
        .await,
    );
    assert!(reason.contains("was replaced by another file"), "{reason}");
}
