use std::io::Write;

use errand::store::Store;
use errand::{CancelResult, JobState};

use crate::output::{job_details, short, table, time};
use crate::{CliError, JobsCommand};

/// Every job id `filter` selects (newest first), read page by page. An empty filter is
/// refused: a bulk change of every job is never what a typo should do.
pub(super) async fn selected(
    store: &dyn Store,
    filter: &crate::Selection,
) -> Result<Vec<i64>, CliError> {
    if filter.is_empty() {
        return Err(CliError::Refused(
            "give a job id, or select jobs with --state, --queue, --kind or --tag".into(),
        ));
    }
    let mut ids = Vec::new();
    let mut page = filter.filter().limit(1000);
    loop {
        let rows = store.list(&page).await?;
        let Some(last) = rows.last().map(|r| r.id) else {
            break;
        };
        ids.extend(rows.iter().map(|r| r.id));
        page = page.before(last);
    }
    Ok(ids)
}

/// A job as JSON, its payload and result as JSON too (not strings holding JSON); one that
/// is not JSON stays a string.
fn job_json(job: &errand::JobRow) -> serde_json::Value {
    let mut v = serde_json::to_value(job).expect("JSON");
    if let Ok(args) = serde_json::from_str::<serde_json::Value>(&job.args) {
        v["args"] = args;
    }
    if let Some(Ok(result)) = job
        .result
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
    {
        v["result"] = result;
    }
    v
}

pub(crate) async fn jobs(
    store: &dyn Store,
    cmd: JobsCommand,
    out: &mut impl Write,
) -> Result<(), CliError> {
    // The store's clock (the database's on Postgres), as every writer uses.
    let now = store.now(chrono::Utc::now()).await;
    match cmd {
        JobsCommand::Delete {
            id,
            filter,
            dry_run,
        } => return super::delete::delete(store, id, &filter, dry_run, out).await,
        JobsCommand::List {
            filter,
            limit,
            before,
            json,
        } => {
            let mut filter = filter.filter().limit(limit);
            if let Some(id) = before {
                filter = filter.before(id);
            }
            let rows = store.list(&filter).await?;
            if json {
                let rows: Vec<serde_json::Value> = rows.iter().map(job_json).collect();
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("JSON")
                )?;
                return Ok(());
            }
            if rows.is_empty() {
                writeln!(out, "no jobs match")?;
                return Ok(());
            }
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|j| {
                    vec![
                        j.id.to_string(),
                        j.kind.clone(),
                        j.queue.clone(),
                        if j.corrupt.is_some() {
                            format!("{} (unreadable)", j.state)
                        } else {
                            j.state.to_string()
                        },
                        format!("{}/{}", j.attempt, j.max_attempts),
                        time(j.run_at),
                        match &j.corrupt {
                            Some(problem) => short(problem, 60),
                            None => j
                                .errors
                                .last()
                                .map(|e| short(&e.message, 60))
                                .unwrap_or_default(),
                        },
                    ]
                })
                .collect();
            table(
                out,
                &[
                    "id",
                    "kind",
                    "queue",
                    "state",
                    "attempt",
                    "run_at",
                    "last error",
                ],
                &cells,
            )?;
        }
        JobsCommand::Show { id, json } => {
            let job = store.get(id).await?.ok_or(CliError::NotFound(id))?;
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&job_json(&job)).expect("JSON")
                )?;
            } else {
                job_details(out, &job)?;
            }
        }
        JobsCommand::Retry {
            id: None,
            filter,
            force,
            dry_run,
        } => {
            let ids = selected(store, &filter).await?;
            let mut retried = 0;
            let mut skipped: std::collections::BTreeMap<String, usize> = Default::default();
            for id in &ids {
                let Some(job) = store.get(*id).await? else {
                    continue;
                };
                let skip = match job.state {
                    JobState::Running => Some("running"),
                    JobState::Completed if !force => Some("completed (pass --force to rerun)"),
                    _ => None,
                };
                if let Some(why) = skip {
                    *skipped.entry(why.to_owned()).or_default() += 1;
                    continue;
                }
                if dry_run {
                    retried += 1;
                    continue;
                }
                match store.retry_now(*id, now).await? {
                    Some(j) if j.state == JobState::Available => retried += 1,
                    Some(_) => {
                        *skipped
                            .entry("another job holds its unique key".to_owned())
                            .or_default() += 1
                    }
                    None => {}
                }
            }
            let verb = if dry_run { "would retry" } else { "retried" };
            writeln!(out, "{verb} {retried} of {} selected jobs", ids.len())?;
            for (why, n) in skipped {
                writeln!(out, "  skipped {n}: {why}")?;
            }
        }
        JobsCommand::Cancel {
            id: None,
            filter,
            dry_run,
        } => {
            let ids = selected(store, &filter).await?;
            let mut cancelled = 0;
            let mut final_already = 0;
            for id in &ids {
                if dry_run {
                    match store.get(*id).await? {
                        Some(j) if !j.state.is_final() => cancelled += 1,
                        Some(_) => final_already += 1,
                        None => {}
                    }
                    continue;
                }
                match store.cancel(*id, now).await? {
                    CancelResult::Cancelled(_) => cancelled += 1,
                    CancelResult::AlreadyFinal(_) => final_already += 1,
                    _ => {}
                }
            }
            let verb = if dry_run { "would cancel" } else { "cancelled" };
            writeln!(out, "{verb} {cancelled} of {} selected jobs", ids.len())?;
            if final_already > 0 {
                writeln!(out, "  skipped {final_already}: already final")?;
            }
        }
        JobsCommand::Retry {
            id: Some(id),
            force,
            dry_run,
            ..
        } => {
            match store.get(id).await? {
                None => return Err(CliError::NotFound(id)),
                Some(j) if j.state == JobState::Completed && !force => {
                    return Err(CliError::Refused(format!(
                        "job {id} completed{}: retrying runs it again, and its effects happen \
                         twice (a second mail, a second charge). Pass --force to run it again",
                        j.finalized_at
                            .map(|t| format!(" at {}", time(t)))
                            .unwrap_or_default()
                    )))
                }
                Some(_) => {}
            }
            if dry_run {
                writeln!(out, "would retry job {id}")?;
                return Ok(());
            }
            let job = store
                .retry_now(id, now)
                .await?
                .ok_or(CliError::NotFound(id))?;
            match job.state {
                JobState::Available => writeln!(
                    out,
                    "job {id} is available again (next attempt {} of {})",
                    job.attempt + 1,
                    job.max_attempts
                )?,
                JobState::Running => {
                    return Err(CliError::Refused(format!(
                        "job {id} is running: wait for its outcome, or cancel it"
                    )))
                }
                other => {
                    return Err(CliError::Refused(format!(
                        "job {id} was not retried (it is {other}): another job holds its unique key {:?}",
                        job.unique_key.unwrap_or_default()
                    )))
                }
            }
        }
        JobsCommand::Cancel {
            id: Some(id),
            dry_run: true,
            ..
        } => match store.get(id).await? {
            Some(j) if !j.state.is_final() => writeln!(out, "would cancel job {id}")?,
            Some(j) => writeln!(out, "job {id} is already {}: nothing to cancel", j.state)?,
            None => return Err(CliError::NotFound(id)),
        },
        JobsCommand::Cancel { id: Some(id), .. } => match store.cancel(id, now).await? {
            CancelResult::Cancelled(_) => writeln!(out, "job {id} cancelled")?,
            CancelResult::AlreadyFinal(j) => {
                return Err(CliError::Refused(format!(
                    "job {id} is already {} and was left as it is",
                    j.state
                )))
            }
            _ => return Err(CliError::NotFound(id)),
        },
    }
    Ok(())
}
