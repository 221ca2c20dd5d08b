//! The database file's identity: a worker must not run on after its file was deleted,
//! replaced or truncated under it.
//!
//! SQLite keeps writing to a file it has open even after the file was deleted (the writes
//! go to an inode no path names, lost at exit) and reports a truncated file only later, as
//! "no such table" or an I/O error. The store records the file's device and inode at open
//! and compares them, at most every [`EVERY`], before it writes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use errand_core::StoreError;

/// How often the file is looked at (one `stat` call).
pub(crate) const EVERY: Duration = Duration::from_millis(500);

/// Smaller than this is no SQLite database (its header alone is 100 bytes).
const HEADER: u64 = 100;

#[derive(Debug)]
pub(crate) struct FileGuard {
    path: PathBuf,
    /// (device, inode) at open; `None` where it cannot be known (not unix, not a file).
    identity: Option<(u64, u64)>,
    last_check: Mutex<Option<Instant>>,
    /// Once lost, always lost: every later write fails the same way.
    lost: std::sync::OnceLock<String>,
}

#[cfg(unix)]
fn identity(path: &Path) -> std::io::Result<((u64, u64), u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(((m.dev(), m.ino()), m.len()))
}

#[cfg(not(unix))]
fn identity(_path: &Path) -> std::io::Result<((u64, u64), u64)> {
    Err(std::io::Error::other(
        "file identity is checked on unix only",
    ))
}

impl FileGuard {
    /// Records the identity of the file at `path` (opened already).
    pub(crate) fn new(path: &Path) -> FileGuard {
        FileGuard {
            path: path.to_owned(),
            identity: identity(path).ok().map(|(id, _)| id),
            last_check: Mutex::new(None),
            lost: std::sync::OnceLock::new(),
        }
    }

    /// `Err(StoreError::Lost)` when the file is gone, replaced or truncated; checks at most
    /// every [`EVERY`].
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let Some(expected) = self.identity else {
            return Ok(());
        };
        if let Some(reason) = self.lost.get() {
            return Err(StoreError::Lost(reason.clone()));
        }
        {
            let mut last = self.last_check.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < EVERY) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let shown = self.path.display();
        let what = match identity(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was deleted".to_owned(),
            Err(e) => format!("cannot be read ({e})"),
            Ok((id, _)) if id != expected => "was replaced by another file".to_owned(),
            Ok((_, len)) if len < HEADER => format!("was truncated to {len} bytes"),
            Ok(_) => return Ok(()),
        };
        let reason = self.lost.get_or_init(|| {
            format!(
                "the SQLite database {shown} {what} while errand had it open: nothing more can \
                 be written to it. Stop this process, restore the file (or point errand at the \
                 right one) and start again"
            )
        });
        Err(StoreError::Lost(reason.clone()))
    }
}
