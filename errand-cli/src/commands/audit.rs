//! The audit log from the command line: `errand audit` lists it, and the commands that
//! change jobs or queues (retry, cancel, delete, pause, resume, set, prune) record what
//! they did in it, as the dashboard does.

use std::io::Write;

use errand::store::Store;
use errand::NewAudit;

use crate::output::table;
use crate::{CliError, JobsCommand, QueuesCommand, Selection};

/// The most of a command's output kept as the entry's detail.
const SAID_MAX: usize = 4 * 1024;

/// What a changing command is about to do.
pub(crate) struct Action {
    action: String,
    target: String,
}

impl Action {
    pub(crate) fn new(action: &str, target: String) -> Self {
        Action {
            action: format!("cli.{action}"),
            target,
        }
    }
}

fn selection(id: Option<i64>, s: &Selection) -> String {
    if let Some(id) = id {
        return format!("job {id}");
    }
    let mut parts: Vec<String> = s.states.iter().map(|st| format!("state={st}")).collect();
    for (k, v) in [("queue", &s.queue), ("kind", &s.kind), ("tag", &s.tag)] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    format!("filter {}", parts.join(" "))
}

/// The entry a `jobs` command records; none for reads and dry runs.
pub(crate) fn of_jobs(c: &JobsCommand) -> Option<Action> {
    match c {
        JobsCommand::Retry {
            id,
            filter,
            dry_run: false,
            ..
        } => Some(Action::new("jobs.retry", selection(*id, filter))),
        JobsCommand::Cancel {
            id,
            filter,
            dry_run: false,
        } => Some(Action::new("jobs.cancel", selection(*id, filter))),
        JobsCommand::Delete {
            id,
            filter,
            dry_run: false,
        } => Some(Action::new("jobs.delete", selection(*id, filter))),
        _ => None,
    }
}

/// The entry a `queues` command records; none for `list`.
pub(crate) fn of_queues(c: &QueuesCommand) -> Option<Action> {
    match c {
        QueuesCommand::Pause { queue } => {
            Some(Action::new("queue.pause", format!("queue {queue}")))
        }
        QueuesCommand::Resume { queue } => {
            Some(Action::new("queue.resume", format!("queue {queue}")))
        }
        QueuesCommand::Set { queue, .. } => {
            Some(Action::new("queue.set", format!("queue {queue}")))
        }
        _ => None,
    }
}

/// Who runs this command: `cli:USER@HOST`.
fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "?".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    format!("cli:{user}@{host}")
}

/// Records `action` with what the command printed (or its error), then returns the
/// command's result. A command that changed nothing (refused) is recorded too: someone
/// tried. Failing to record is reported after the command's own output.
pub(crate) async fn record(
    store: &dyn Store,
    action: Option<Action>,
    result: Result<(), CliError>,
    said: String,
) -> Result<(), CliError> {
    let Some(a) = action else { return result };
    let detail = match &result {
        Ok(()) => said.trim().to_owned(),
        Err(e) => format!("failed: {e}"),
    };
    let now = store.now(chrono::Utc::now()).await;
    let entry = NewAudit::new(actor(), a.action, a.target, detail);
    if let Err(e) = store.record_audit(&entry, now).await {
        eprintln!("warning: the command ran but could not be recorded in the audit log: {e}");
    }
    result
}

/// Writes through to `inner` and keeps the first [`SAID_MAX`] bytes.
pub(crate) struct Tee<'a, W: Write> {
    inner: &'a mut W,
    said: Vec<u8>,
}

impl<'a, W: Write> Tee<'a, W> {
    pub(crate) fn new(inner: &'a mut W) -> Self {
        Tee {
            inner,
            said: Vec::new(),
        }
    }

    pub(crate) fn into_said(self) -> String {
        String::from_utf8_lossy(&self.said).into_owned()
    }
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let room = SAID_MAX.saturating_sub(self.said.len());
        self.said.extend_from_slice(&buf[..n.min(room)]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `errand audit`.
pub(crate) async fn list(
    store: &dyn Store,
    limit: u32,
    before: Option<i64>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let entries = store.audit_log(limit, before).await?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&entries).expect("JSON")
        )?;
        return Ok(());
    }
    if entries.is_empty() {
        writeln!(out, "no action recorded yet")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                e.detail.replace('\n', " / "),
            ]
        })
        .collect();
    table(
        out,
        &["id", "at (UTC)", "who", "action", "target", "outcome"],
        &rows,
    )?;
    Ok(())
}
