use std::io::Write;

use errand::{CancelResult, JobState, ListFilter, Store};

use crate::output::{job_details, short, table, time};
use crate::{CliError, JobsCommand};

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
                limit: limit.max(1),
                before_id: None,
            };
            let rows = store.list(&filter).await?;
            if json {
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
                writeln!(out, "{}", serde_json::to_string_pretty(&job).expect("JSON"))?;
            } else {
                job_details(out, &job)?;
            }
        }
        JobsCommand::Retry { id } => {
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
