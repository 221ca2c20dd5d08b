//! The audit log: who did what to which jobs or queues, and when. Operator surfaces (the
//! dashboard, the CLI) record every action they take; stores keep the entries in order.

use chrono::{DateTime, Utc};

/// Longest actor, action or target kept (bytes); longer values are cut at a character
/// boundary so one hostile request cannot bloat the log.
pub const MAX_AUDIT_FIELD: usize = 512;
/// Longest detail kept (bytes).
pub const MAX_AUDIT_DETAIL: usize = 8 * 1024;

/// An action to record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewAudit {
    /// Who acted: a user name, `token`, `cli@host` or what the application's layer says.
    pub actor: String,
    /// What was done (`job.retry`, `queue.pause`, `jobs.cancel` ...).
    pub action: String,
    /// What it was done to (`job 42`, `queue mail`, `filter state=failed`).
    pub target: String,
    /// Free text: the outcome, counts, the ids touched.
    pub detail: String,
}

impl NewAudit {
    /// An entry, NUL bytes replaced by U+FFFD and its fields cut to [`MAX_AUDIT_FIELD`] /
    /// [`MAX_AUDIT_DETAIL`] bytes.
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        NewAudit {
            actor: cut(actor.into(), MAX_AUDIT_FIELD),
            action: cut(action.into(), MAX_AUDIT_FIELD),
            target: cut(target.into(), MAX_AUDIT_FIELD),
            detail: cut(detail.into(), MAX_AUDIT_DETAIL),
        }
    }
}

/// A recorded action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AuditEntry {
    /// Increasing with every entry.
    pub id: i64,
    /// When it was recorded (the store's clock, from [`crate::Store::now`]).
    pub at: DateTime<Utc>,
    /// Who acted.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// The outcome.
    pub detail: String,
}

impl AuditEntry {
    /// An entry as a store read it back.
    pub fn new(id: i64, at: DateTime<Utc>, entry: NewAudit) -> Self {
        AuditEntry {
            id,
            at,
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            detail: entry.detail,
        }
    }
}

fn cut(mut s: String, max: usize) -> String {
    // Postgres text cannot hold NUL: keep the entry, mark the byte.
    if s.contains('\0') {
        s = s.replace('\0', "\u{FFFD}");
    }
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_at_a_character_boundary() {
        let e = NewAudit::new("é".repeat(400), "a", "t", "d".repeat(10_000));
        assert_eq!(e.actor.len(), 512);
        assert!(e.actor.chars().all(|c| c == 'é'));
        assert_eq!(e.detail.len(), MAX_AUDIT_DETAIL);
    }
}
