use std::io::Write;
use std::time::Duration;

use errand::store::Store;
use errand::{JobState, ListFilter};

use crate::CliError;

/// Final jobs deleted per statement, so a large prune never holds up claims for long.
const BATCH: u32 = 1000;

pub(crate) async fn prune(
    store: &dyn Store,
    older_than: Duration,
    states: &[JobState],
    dry_run: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    const FINAL: [JobState; 3] = [
        JobState::Completed,
        JobState::Discarded,
        JobState::Cancelled,
    ];
    if let Some(s) = states.iter().find(|s| !s.is_final()) {
        return Err(CliError::Refused(format!(
            "{s} jobs are not finished: prune takes completed, discarded or cancelled"
        )));
    }
    let states = if states.is_empty() {
        &FINAL[..]
    } else {
        states
    };
    let now = store.now(chrono::Utc::now()).await;
    let before = chrono::TimeDelta::from_std(older_than)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    if dry_run {
        let mut n = 0;
        let mut page = states
            .iter()
            .fold(ListFilter::new(), |f, s| f.state(*s))
            .limit(BATCH);
        loop {
            let rows = store.list(&page).await?;
            let Some(last) = rows.last().map(|r| r.id) else {
                break;
            };
            n += rows
                .iter()
                .filter(|r| r.finalized_at.is_some_and(|t| t < before))
                .count();
            page = page.before(last);
        }
        writeln!(
            out,
            "would delete {n} final jobs that ended before {before}"
        )?;
        return Ok(());
    }
    let mut total = 0;
    for state in states {
        loop {
            let n = store.prune(*state, before, BATCH).await?;
            total += n;
            if n < u64::from(BATCH) {
                break;
            }
        }
    }
    writeln!(out, "deleted {total} final jobs that ended before {before}")?;
    Ok(())
}
