//! The queues page: every queue's state and limits, pause and resume, and a drain view:
//! its available jobs, how many of its jobs finished per minute lately (from the leader's
//! tallies) and how long the backlog takes at that rate.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use crate::app::{failure, Action, App, Page};
use crate::layout::{self, degraded};
use crate::pages::overview::{bounded, urlenc};

/// Minutes the drain rate is averaged over.
const DRAIN_MINUTES: i64 = 5;

pub(crate) async fn list(State(app): State<App>, page: Page) -> Response {
    let now = app.now().await;
    // The drain view: finished per minute over the last five whole tallied minutes.
    let window_end = errand::store::minute_of(now) - chrono::TimeDelta::minutes(1);
    let window_start = window_end - chrono::TimeDelta::minutes(DRAIN_MINUTES);
    let (records, oldest, counts, minutes) = tokio::join!(
        bounded(&app, app.store().queues()),
        bounded(&app, app.store().oldest_available()),
        crate::pages::counts::Counts::read(&app),
        bounded(&app, app.store().finished_per_minute(window_start))
    );
    let mut per_min: std::collections::BTreeMap<String, f64> = Default::default();
    for m in minutes.iter().flatten().filter(|m| m.minute < window_end) {
        *per_min.entry(m.queue.clone()).or_default() += m.count as f64 / DRAIN_MINUTES as f64;
    }
    let available = |q: &str| counts.get(q, errand::JobState::Available);
    // A queue gets a record when first paused or limited: the others are known by their jobs.
    let records = records.map(|records| {
        let mut all: std::collections::BTreeMap<String, Option<errand::QueueRecord>> = records
            .into_iter()
            .map(|r| (r.name.clone(), Some(r)))
            .collect();
        for q in counts.queues.keys() {
            all.entry(q.clone()).or_insert(None);
        }
        all
    });
    let base = &page.base;
    let content = html! {
        h1 { "Queues" }
        @for (state, e) in &counts.missing { (degraded(&format!("Queues known by their {state} jobs"), e)) }
        @match &records {
            Err(e) => (degraded("Queues", e)),
            Ok(records) => {
                table.grid #queue-records {
                    thead { tr {
                        th { "Queue" } th { "Status" } th.num { "Available" } th.num { "Lag" }
                        th.num { "Finished / min" } th { "Drains in" } th { "Max running" }
                        th { "Max per key" } th { "Rate" } th { "Changed" } th {}
                    } }
                    tbody {
                        @for (name, r) in records {
                            @let lag = oldest.as_ref().ok().and_then(|o| o.iter().find(|(q, _)| q == name)).map(|(_, t)| (now - *t).num_seconds());
                            @let paused = r.as_ref().is_some_and(|r| r.paused);
                            @let dash = || "–".to_string();
                            tr data-queue=(name) {
                                td { a href={ (base) "/jobs?queue=" (urlenc(name)) } { (name) } }
                                td.status { @if paused { span.state.paused { "paused" } } @else { "running" } }
                                td.num.available { (counts.show(errand::JobState::Available, available(name))) }
                                td.num { (lag.map(layout::lag).unwrap_or_else(dash)) }
                                @let rate = per_min.get(name.as_str()).copied().unwrap_or(0.0);
                                td.num.rate { (format!("{rate:.1}")) }
                                td.drain {
                                    @if available(name) == 0 { "empty" }
                                    @else if rate <= 0.0 { @if paused { "paused" } @else { "not draining" } }
                                    @else { "~" (layout::lag((available(name) as f64 / rate * 60.0) as i64)) }
                                }
                                td { (r.as_ref().and_then(|r| r.max_running).map(|n| n.to_string()).unwrap_or_else(dash)) }
                                td { (r.as_ref().and_then(|r| r.max_per_key).map(|n| n.to_string()).unwrap_or_else(dash)) }
                                td { @if let Some(rate) = r.as_ref().and_then(|r| r.rate.as_ref()) { (rate.starts) " per " (rate.period.as_millis()) " ms" } @else { "–" } }
                                td { @if let Some(r) = r { (layout::when(r.updated_at, now)) } @else { "never" } }
                                td {
                                    @if paused {
                                        (layout::action(&page, &format!("/queues/{}/resume", urlenc(name)), "Resume", "resume"))
                                    } @else {
                                        (layout::action(&page, &format!("/queues/{}/pause", urlenc(name)), "Pause", "pause"))
                                    }
                                }
                            }
                        }
                        @if records.is_empty() { tr { td colspan="11" { "No queues yet." } } }
                    }
                }
            }
        }
    };
    layout::page(&page, "Queues", true, content).into_response()
}

/// `POST /queues/{name}/pause|resume`.
pub(crate) async fn act(
    State(app): State<App>,
    Path((name, action)): Path<(String, String)>,
    Action { page, .. }: Action,
) -> Response {
    let result = match action.as_str() {
        "pause" => app.client.pause_queue(&name).await,
        "resume" => app.client.resume_queue(&name).await,
        _ => return failure(StatusCode::NOT_FOUND, "no such action: pause or resume"),
    };
    let detail = match &result {
        Ok(r) => if r.paused { "paused" } else { "running" }.to_string(),
        Err(e) => format!("failed: {e}"),
    };
    let audit_failed = app
        .audit(
            &page.actor,
            &format!("queue.{action}"),
            &format!("queue {name}"),
            &detail,
        )
        .await;
    match (result, audit_failed) {
        (Ok(_), None) => Redirect::to(&format!("{}/queues", page.base)).into_response(),
        (Err(e), _) => failure(StatusCode::BAD_REQUEST, &e.to_string()),
        (_, Some(audit)) => failure(StatusCode::INTERNAL_SERVER_ERROR, &audit),
    }
}
