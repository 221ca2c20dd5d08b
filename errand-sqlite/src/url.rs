//! Turning what a user passes (`errand.db`, `sqlite://errand.db`, `sqlite:errand.db`) into a path.

use std::path::PathBuf;

use errand_core::StoreError;

/// The file a SQLite URL or path names.
pub(crate) fn parse_location(input: &str) -> Result<PathBuf, StoreError> {
    let bad = |reason: &str| StoreError::InvalidUrl {
        url: input.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = if let Some(r) = input.strip_prefix("sqlite://") {
        r
    } else if let Some(r) = input.strip_prefix("sqlite:") {
        r
    } else if input.contains("://") {
        return Err(bad(
            "this store only opens SQLite files: use sqlite://PATH or a plain file path",
        ));
    } else {
        input
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(bad("no file path: use sqlite://errand.db"));
    }
    if path == ":memory:" {
        return Err(bad(
            "in-memory SQLite is not shared between connections: use errand::MemoryStore",
        ));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_paths_and_urls() {
        assert_eq!(
            parse_location("errand.db").unwrap(),
            PathBuf::from("errand.db")
        );
        assert_eq!(
            parse_location("sqlite://a/b.db").unwrap(),
            PathBuf::from("a/b.db")
        );
        assert_eq!(
            parse_location("sqlite:///tmp/x.db").unwrap(),
            PathBuf::from("/tmp/x.db")
        );
        assert_eq!(
            parse_location("sqlite:x.db?mode=rwc").unwrap(),
            PathBuf::from("x.db")
        );
    }

    #[test]
    fn rejects_other_schemes_and_empty_paths() {
        for bad in [
            "postgres://localhost/db",
            "sqlite://",
            "",
            "sqlite::memory:",
        ] {
            let err = parse_location(bad).unwrap_err().to_string();
            assert!(err.contains("invalid database url"), "{bad}: {err}");
        }
    }
}
