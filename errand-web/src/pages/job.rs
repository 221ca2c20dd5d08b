//! One job: its arguments (pretty JSON, as text), options, attempts, error history, result,
//! progress, a timeline of its states, and retry / cancel / delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use errand::{JobId, JobRow, JobState};
use maud::{html, Markup};

use crate::app::{failure, Action, App, Page};
use crate::layout::{self, degraded};
use crate::pages::actions::{apply, Applied, JobAction};
use crate::pages::overview::bounded;

pub(crate) async fn show(State(app): State<App>, page: Page, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return failure(StatusCode::NOT_FOUND, "job ids are whole numbers");
    };
    let now = app.now().await;
    let row = match bounded(&app, app.store().get(id)).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            return failure(
                StatusCode::NOT_FOUND,
                &format!("no job {id}: it never existed, or it was deleted or pruned"),
            )
        }
        Err(e) => {
            let content = html! { h1 { "Job " (id) } (degraded("Job", &e)) };
            return layout::page(&page, "Job", true, content).into_response();
        }
    };
    let content = detail(&page, &row, now);
    layout::page(&page, &format!("Job {id}"), true, content).into_response()
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| json.to_owned())
}

fn detail(page: &Page, r: &JobRow, now: chrono::DateTime<chrono::Utc>) -> Markup {
    let id = r.id;
    let can_retry = r.state != JobState::Running && r.state != JobState::Available;
    let can_cancel = !r.state.is_final();
    let can_delete = r.state != JobState::Running;
    let mut timeline = vec![("created", r.created_at)];
    if r.state == JobState::Scheduled || r.state == JobState::Retryable {
        timeline.push(("runs", r.run_at));
    }
    if let Some(t) = r.attempted_at {
        timeline.push(("last attempt started", t));
    }
    for e in &r.errors {
        timeline.push(("attempt failed", e.at));
    }
    if let Some(t) = r.finalized_at {
        timeline.push((r.state.as_str(), t));
    }
    timeline.sort_by_key(|(_, t)| *t);
    html! {
        h1 { "Job " (id) " " (layout::state(r.state)) }
        @if let Some(c) = &r.corrupt {
            p.degraded { "This row could not be read whole: " (c) }
        }
        div.actions {
            @if can_retry { (layout::action(page, &format!("/jobs/{id}/retry"), "Retry", "retry")) }
            @if can_cancel { (layout::action(page, &format!("/jobs/{id}/cancel"), "Cancel", "cancel")) }
            @if can_delete { (layout::action(page, &format!("/jobs/{id}/delete"), "Delete", "danger")) }
        }
        table.fields #fields {
            tr { th { "Kind" } td { (r.kind) } }
            tr { th { "Queue" } td { a href={ (page.base) "/jobs?queue=" (crate::pages::overview::urlenc(&r.queue)) } { (r.queue) } } }
            tr { th { "State" } td #state { (r.state.as_str()) } }
            tr { th { "Attempt" } td { (r.attempt) " of " (r.max_attempts) } }
            tr { th { "Priority" } td { (r.priority) } }
            tr { th { "Run at" } td { (layout::when(r.run_at, now)) } }
            tr { th { "Created" } td { (layout::when(r.created_at, now)) } }
            @if let Some(t) = r.attempted_at { tr { th { "Attempted" } td { (layout::when(t, now)) } } }
            @if let Some(t) = r.finalized_at { tr { th { "Finished" } td { (layout::when(t, now)) } } }
            @if let Some(w) = &r.attempted_by { tr { th { "Worker" } td { code { (w) } } } }
            @if let Some(t) = r.lease_expires_at { tr { th { "Lease ends" } td { (layout::when(t, now)) } } }
            @if !r.tags.is_empty() { tr { th { "Tags" } td { @for t in &r.tags { span.tag { (t) } " " } } } }
            @if let Some(k) = &r.unique_key { tr { th { "Unique key" } td { code { (k) } } } }
            @if let Some(k) = &r.partition_key { tr { th { "Partition key" } td { code { (k) } } } }
            @if let Some(ms) = r.timeout_ms { tr { th { "Timeout" } td { (ms) " ms" } } }
        }
        h2 { "Arguments" }
        pre #args { (pretty(&r.args)) }
        @if let Some(p) = &r.progress {
            h2 { "Progress" }
            p #progress {
                @if let Some(pc) = p.percent { (format!("{pc:.1}")) " % " }
                (p.message) " " small { "(attempt " (p.attempt) ", " (layout::ago(p.at, now)) ")" }
            }
        }
        @if let Some(res) = &r.result {
            h2 { "Result" }
            pre #result { (pretty(res)) }
        }
        h2 { "Errors" }
        @if r.errors.is_empty() { p { "None." } } @else {
            table.grid #errors {
                thead { tr { th.num { "Attempt" } th { "At" } th { "Error" } } }
                tbody {
                    @for e in r.errors.iter().rev() {
                        tr {
                            td.num { (e.attempt) }
                            td { (layout::when(e.at, now)) }
                            td { @if e.panic { span.state.discarded { "panic" } " " } pre.inline { (e.message) } }
                        }
                    }
                }
            }
        }
        h2 { "Timeline" }
        ol.timeline #timeline {
            @for (what, t) in &timeline { li { strong { (what) } " " (layout::when(*t, now)) } }
        }
    }
}

/// `POST /jobs/{id}/{action}`: the job page's buttons.
pub(crate) async fn act(
    State(app): State<App>,
    Path((id, action)): Path<(String, String)>,
    Action { page, .. }: Action,
) -> Response {
    let (Ok(id), Some(action)) = (id.parse::<JobId>(), JobAction::parse(&action)) else {
        return failure(StatusCode::NOT_FOUND, "no such action");
    };
    let outcome = apply(&app, action, id).await;
    let detail = match &outcome {
        Ok(Applied::Done) => action.past().to_string(),
        Ok(Applied::Skipped(why)) => format!("not {}: {why}", action.past()),
        Err(e) => format!("failed: {e}"),
    };
    let audit_failed = app
        .audit(
            &page.actor,
            &format!("job.{}", action.as_str()),
            &format!("job {id}"),
            &detail,
        )
        .await;
    match (outcome, audit_failed) {
        (Ok(Applied::Done), None) if action == JobAction::Delete => {
            Redirect::to(&format!("{}/jobs", page.base)).into_response()
        }
        (Ok(Applied::Done), None) => {
            Redirect::to(&format!("{}/jobs/{id}", page.base)).into_response()
        }
        (Ok(Applied::Skipped(why)), None) => failure(StatusCode::CONFLICT, &why),
        (Err(e), _) => failure(StatusCode::INTERNAL_SERVER_ERROR, &e),
        (_, Some(audit)) => failure(StatusCode::INTERNAL_SERVER_ERROR, &audit),
    }
}
