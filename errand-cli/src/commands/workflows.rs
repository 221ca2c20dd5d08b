//! `errand workflows list|show|cancel`: workflows, their steps and what each waits for.

use std::io::Write;

use errand::store::Store;
use errand::{JobState, WorkflowRecord};

use crate::output::table;
use crate::CliError;

pub(crate) async fn list(
    store: &dyn Store,
    limit: u32,
    before: Option<&str>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let all = store.workflows(limit, before).await?;
    if json {
        let doc: Vec<serde_json::Value> = all
            .iter()
            .map(|w| {
                let counts: serde_json::Map<String, serde_json::Value> = w
                    .counts
                    .iter()
                    .map(|(s, n)| (s.to_string(), (*n).into()))
                    .collect();
                serde_json::json!({
                    "id": w.id,
                    "name": w.name,
                    "created_at": w.created_at,
                    "jobs": w.jobs(),
                    "finished": w.is_finished(),
                    "counts": counts,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("JSON"))?;
        return Ok(());
    }
    if all.is_empty() {
        writeln!(out, "no workflows")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|w| {
            let counts: Vec<String> = w.counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
            vec![
                w.id.clone(),
                w.name.clone(),
                w.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                w.jobs().to_string(),
                if w.is_finished() {
                    "finished"
                } else {
                    "running"
                }
                .to_owned(),
                counts.join(", "),
            ]
        })
        .collect();
    table(
        out,
        &["id", "name", "created (UTC)", "steps", "status", "states"],
        &rows,
    )?;
    Ok(())
}

pub(crate) async fn show(
    store: &dyn Store,
    id: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let Some(wf) = store.workflow(id).await? else {
        return Err(CliError::NoWorkflow(id.to_owned()));
    };
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&to_json(&wf)).expect("JSON")
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "workflow {} ({}), created {} UTC, {} steps{}",
        wf.id,
        wf.name,
        wf.created_at.format("%Y-%m-%d %H:%M:%S"),
        wf.steps.len(),
        if wf.is_finished() { ", finished" } else { "" }
    )?;
    let rows: Vec<Vec<String>> = wf
        .steps
        .iter()
        .map(|s| {
            let deps: Vec<String> = s
                .deps
                .iter()
                .map(|d| {
                    let mut t = d.step.clone();
                    if d.ignore_failure {
                        t.push('?');
                    }
                    if !d.settled {
                        t.push('*');
                    }
                    t
                })
                .collect();
            let note = match (s.job.state, s.cancelled_by) {
                (JobState::Cancelled, Some(by)) => format!("cancelled by job {by}"),
                (JobState::Pending, _) => format!("waits on {}", s.waiting_on),
                _ => s
                    .job
                    .errors
                    .last()
                    .map(|e| e.message.chars().take(60).collect())
                    .unwrap_or_default(),
            };
            vec![
                s.step.clone(),
                s.job.id.to_string(),
                s.job.kind.clone(),
                s.job.state.to_string(),
                deps.join(" "),
                note,
            ]
        })
        .collect();
    table(
        out,
        &["step", "job", "kind", "state", "after", "note"],
        &rows,
    )?;
    writeln!(
        out,
        "after: the steps it depends on; * not settled yet, ? runs even if that one fails"
    )?;
    Ok(())
}

fn to_json(wf: &WorkflowRecord) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = wf
        .steps
        .iter()
        .map(|s| {
            let deps: Vec<serde_json::Value> = s
                .deps
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "step": d.step, "job": d.parent,
                        "ignore_failure": d.ignore_failure, "settled": d.settled,
                    })
                })
                .collect();
            serde_json::json!({
                "step": s.step,
                "job": s.job.id,
                "kind": s.job.kind,
                "queue": s.job.queue,
                "state": s.job.state,
                "waiting_on": s.waiting_on,
                "cancelled_by": s.cancelled_by,
                "deps": deps,
                "errors": s.job.errors,
            })
        })
        .collect();
    serde_json::json!({
        "id": wf.id,
        "name": wf.name,
        "created_at": wf.created_at,
        "finished": wf.is_finished(),
        "steps": steps,
    })
}

pub(crate) async fn cancel(
    store: &dyn Store,
    id: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if store.workflow(id).await?.is_none() {
        return Err(CliError::NoWorkflow(id.to_owned()));
    }
    let now = store.now(chrono::Utc::now()).await;
    let n = store.cancel_workflow(id, now).await?;
    writeln!(out, "cancelled {n} unfinished steps of workflow {id}")?;
    Ok(())
}
