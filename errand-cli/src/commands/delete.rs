//! `errand jobs delete`: one job by id, or every job a filter selects; running jobs are left
//! alone (cancel them first, so their workers stop).

use std::io::Write;

use errand::store::Store;
use errand::{DeleteResult, JobState};

use crate::{CliError, Selection};

pub(crate) async fn delete(
    store: &dyn Store,
    id: Option<i64>,
    filter: &Selection,
    dry_run: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if let Some(id) = id {
        return delete_one(store, id, dry_run, out).await;
    }
    let ids = super::jobs::selected(store, filter).await?;
    let (mut deleted, mut running) = (0, 0);
    for id in &ids {
        if dry_run {
            match store.get(*id).await? {
                Some(j) if j.state == JobState::Running => running += 1,
                Some(_) => deleted += 1,
                None => {}
            }
            continue;
        }
        match store.delete(*id).await? {
            DeleteResult::Deleted(_) => deleted += 1,
            DeleteResult::Running(_) => running += 1,
            _ => {}
        }
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    writeln!(out, "{verb} {deleted} of {} selected jobs", ids.len())?;
    if running > 0 {
        writeln!(out, "  skipped {running}: running (cancel them first)")?;
    }
    Ok(())
}

async fn delete_one(
    store: &dyn Store,
    id: i64,
    dry_run: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let running = || {
        CliError::Refused(format!(
            "job {id} is running: cancel it first (errand jobs cancel {id}), then delete it"
        ))
    };
    if dry_run {
        return match store.get(id).await? {
            Some(j) if j.state == JobState::Running => Err(running()),
            Some(j) => Ok(writeln!(out, "would delete job {id} ({})", j.state)?),
            None => Err(CliError::NotFound(id)),
        };
    }
    match store.delete(id).await? {
        DeleteResult::Deleted(j) => writeln!(out, "job {id} deleted (it was {})", j.state)?,
        DeleteResult::Running(_) => return Err(running()),
        _ => return Err(CliError::NotFound(id)),
    }
    Ok(())
}
