use std::io::Write;

use errand::{CancelResult, JobState, ListFilter, Store};

use crate::output::{job_details, short, table, time};
use crate::{CliError, JobsCommand};

/// A job as JSON, its payload as JSON too (not a string holding JSON); a payload that is
/// not JSON stays a string.
fn job_json(job: &errand::JobRow) -> serde_json::Value {
    let mut v = serde_json::to_value(job).expect("JSON");
    if let Ok(args) = serde_json::from_str::<serde_json::Value>(&job.args) {
        v["args"] = args;
    }
    v
}

pub(crate) async fn jobs(
    store: &dyn Store,
    cmd: JobsCommand,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let now = chrono::Utc::now();
    match cmd {
        JobsCommand::List {
            state,
            queue,
            kind,
            limit,
            json,
        } => {
            let filter = ListFilter {
                states: state.into_iter().collect(),
                queue,
                kind,
                limit,
                before_id: None,
            };
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
        JobsCommand::Retry { id, force } => {
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
        JobsCommand::Cancel { id } => match store.cancel(id, now).await? {
            CancelResult::Cancelled(_) => writeln!(out, "job {id} cancelled")?,
            CancelResult::AlreadyFinal(j) => {
                return Err(CliError::Refused(format!(
                    "job {id} is already {} and was left as it is",
                    j.state
                )))
            }
            CancelResult::NotFound => return Err(CliError::NotFound(id)),
        },
    }
    Ok(())
}
