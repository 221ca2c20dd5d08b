//! The workflows pages: the list (newest first, with counts per state) and one workflow — a
//! graph of its steps coloured by state (inline SVG: nothing loads from elsewhere), each
//! step's job, state and what it waits for, and a button to cancel what has not ended.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use errand::{JobState, WorkflowRecord};
use maud::{html, Markup, PreEscaped};

use crate::app::{failure, Action, App, Page};
use crate::layout::{self, degraded};
use crate::pages::overview::{bounded, urlenc};

/// Workflows per page of the list.
const PER_PAGE: u32 = 50;
/// Steps drawn in the graph; a larger workflow shows its table only.
pub(crate) const GRAPH_MAX: usize = 300;
/// Steps listed in the table.
const TABLE_MAX: usize = 2_000;

#[derive(Debug, serde::Deserialize)]
pub(crate) struct ListQuery {
    before: Option<String>,
}

pub(crate) async fn list(
    State(app): State<App>,
    page: Page,
    Query(q): Query<ListQuery>,
) -> Response {
    let now = app.now().await;
    let all = bounded(&app, app.store().workflows(PER_PAGE, q.before.as_deref())).await;
    let base = &page.base;
    let content = html! {
        h1 { "Workflows" }
        @match &all {
            Err(e) => (degraded("Workflows", e)),
            Ok(all) => {
                table.grid #workflows {
                    thead { tr {
                        th { "Workflow" } th { "Name" } th { "Created" } th.num { "Steps" }
                        th { "Status" } th { "States" }
                    } }
                    tbody {
                        @for w in all {
                            tr data-workflow=(w.id) {
                                td { a href={ (base) "/workflows/" (urlenc(&w.id)) } { code { (w.id) } } }
                                td { (w.name) }
                                td { (layout::when(w.created_at, now)) }
                                td.num { (w.jobs()) }
                                td { @if w.is_finished() { "finished" } @else { span.state.running { "running" } } }
                                td { @for (s, n) in &w.counts { (layout::state(*s)) " " (n) " " } }
                            }
                        }
                        @if all.is_empty() { tr { td colspan="6" { "No workflows." } } }
                    }
                }
                @if all.len() == PER_PAGE as usize {
                    @if let Some(last) = all.last() {
                        p { a href={ (base) "/workflows?before=" (urlenc(&last.id)) } { "Older workflows →" } }
                    }
                }
            }
        }
    };
    layout::page(&page, "Workflows", true, content).into_response()
}

pub(crate) async fn show(State(app): State<App>, page: Page, Path(id): Path<String>) -> Response {
    let now = app.now().await;
    let wf = match bounded(&app, app.store().workflow(&id)).await {
        Ok(Some(wf)) => wf,
        Ok(None) => return failure(StatusCode::NOT_FOUND, &format!("no workflow '{id}'")),
        Err(e) => {
            let content = degraded("Workflow", &e);
            return layout::page(&page, "Workflow", true, content).into_response();
        }
    };
    let base = &page.base;
    let content = html! {
        h1 { "Workflow " code { (wf.id) } }
        p #workflow-summary {
            (wf.name) " · created " (layout::when(wf.created_at, now)) " · " (wf.steps.len()) " steps · "
            @if wf.is_finished() { "finished" } @else { "running" }
        }
        @if !wf.is_finished() {
            (layout::action(&page, &format!("/workflows/{}/cancel", urlenc(&wf.id)), "Cancel unfinished steps", "danger"))
        }
        @if wf.steps.len() <= GRAPH_MAX {
            (graph(&wf))
        } @else {
            p { "The graph is drawn for workflows of up to " (GRAPH_MAX) " steps; this one has " (wf.steps.len()) "." }
        }
        table.grid #steps {
            thead { tr {
                th { "Step" } th.num { "Job" } th { "Kind" } th { "State" } th { "Waits for" } th { "Note" }
            } }
            tbody {
                @for s in wf.steps.iter().take(TABLE_MAX) {
                    tr data-step=(s.step) {
                        td { (s.step) }
                        td.num { a href={ (base) "/jobs/" (s.job.id) } { (s.job.id) } }
                        td { (s.job.kind) }
                        td { (layout::state(s.job.state)) }
                        td {
                            @for d in &s.deps {
                                span.tag title=(if d.settled { "settled" } else { "not settled yet" }) {
                                    (d.step) @if d.ignore_failure { " (any end)" } @if !d.settled { " ·" }
                                }
                                " "
                            }
                        }
                        td {
                            @if let (JobState::Cancelled, Some(by)) = (s.job.state, s.cancelled_by) {
                                "cancelled by job " a href={ (base) "/jobs/" (by) } { (by) }
                            } @else if s.job.state == JobState::Pending {
                                "waits on " (s.waiting_on)
                            } @else if let Some(e) = s.job.errors.last() {
                                (e.message.chars().take(80).collect::<String>())
                            }
                        }
                    }
                }
            }
        }
        @if wf.steps.len() > TABLE_MAX {
            p { "First " (TABLE_MAX) " of " (wf.steps.len()) " steps shown; `errand workflows show " (wf.id) " --json` lists all." }
        }
    };
    layout::page(&page, "Workflow", true, content).into_response()
}

/// The steps as a layered graph: a step's column is the longest chain of dependencies
/// before it, edges run left to right, each node coloured by its job's state.
fn graph(wf: &WorkflowRecord) -> Markup {
    let index: HashMap<i64, usize> = wf
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.job.id, i))
        .collect();
    // Steps come in id order; a dependency may have a higher id (steps are numbered in the
    // order given), so settle the depths by relaxing until nothing changes.
    let mut depth = vec![0usize; wf.steps.len()];
    for _ in 0..wf.steps.len() {
        let mut changed = false;
        for (i, s) in wf.steps.iter().enumerate() {
            for d in &s.deps {
                if let Some(&p) = index.get(&d.parent) {
                    if depth[p] + 1 > depth[i] {
                        depth[i] = depth[p] + 1;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut row = vec![0usize; wf.steps.len()];
    let mut per_col: HashMap<usize, usize> = HashMap::new();
    for i in 0..wf.steps.len() {
        let n = per_col.entry(depth[i]).or_default();
        row[i] = *n;
        *n += 1;
    }
    let (w, h, gx, gy) = (150.0, 28.0, 60.0, 12.0);
    let x = |i: usize| 10.0 + depth[i] as f64 * (w + gx);
    let y = |i: usize| 10.0 + row[i] as f64 * (h + gy);
    let cols = depth.iter().max().map_or(1, |d| d + 1);
    let rows = per_col.values().max().copied().unwrap_or(1);
    let width = 20.0 + cols as f64 * (w + gx) - gx;
    let height = 20.0 + rows as f64 * (h + gy) - gy;
    html! {
        svg.workflow-graph #workflow-graph xmlns="http://www.w3.org/2000/svg" role="img"
            aria-label="The workflow's steps and their dependencies, coloured by state"
            width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } {
            @for (i, s) in wf.steps.iter().enumerate() {
                @for d in &s.deps {
                    @if let Some(&p) = index.get(&d.parent) {
                        line class={ "edge" @if d.ignore_failure { " tolerant" } }
                            x1=(x(p) + w) y1=(y(p) + h / 2.0) x2=(x(i)) y2=(y(i) + h / 2.0) {}
                    }
                }
            }
            @for (i, s) in wf.steps.iter().enumerate() {
                g class={ "node " (s.job.state.as_str()) } data-step=(s.step) {
                    title { (s.step) ": job " (s.job.id) ", " (s.job.state.as_str()) }
                    rect x=(x(i)) y=(y(i)) width=(w) height=(h) rx="4" {}
                    text x=(x(i) + 8.0) y=(y(i) + 18.0) {
                        (s.step.chars().take(20).collect::<String>())
                    }
                }
            }
        }
        p.legend {
            @for s in JobState::ALL { (layout::state(s)) " " }
            (PreEscaped("&nbsp;")) "dashed: runs whatever that dependency's end"
        }
    }
}

pub(crate) async fn cancel(
    State(app): State<App>,
    Path(id): Path<String>,
    Action { page, .. }: Action,
) -> Response {
    let result = app.client.cancel_workflow(&id).await;
    let detail = match &result {
        Ok(n) => format!("cancelled {n} unfinished steps"),
        Err(e) => format!("failed: {e}"),
    };
    let audit_failed = app
        .audit(
            &page.actor,
            "workflow.cancel",
            &format!("workflow {id}"),
            &detail,
        )
        .await;
    match (result, audit_failed) {
        (Ok(_), None) => {
            Redirect::to(&format!("{}/workflows/{}", page.base, urlenc(&id))).into_response()
        }
        (Err(e), _) => failure(StatusCode::BAD_REQUEST, &e.to_string()),
        (_, Some(audit)) => failure(StatusCode::INTERNAL_SERVER_ERROR, &audit),
    }
}
