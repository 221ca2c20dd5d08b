//! The jobs page: filter by state, queue, kind and tag; find one by id; page by id
//! (keyset, newest first); retry, cancel or delete a selection or everything matching the
//! filter, after a preview that says how many and a confirmation.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use errand::{JobId, JobState};
use maud::html;

use crate::app::{failure, Action, App, Page};
use crate::form::Fields;
use crate::layout::{self, degraded};
use crate::pages::actions::{apply, Applied, JobAction};
use crate::pages::filter::JobsFilter;
use crate::pages::overview::bounded;

const PAGE: u32 = 50;

pub(crate) async fn list(State(app): State<App>, page: Page, RawQuery(q): RawQuery) -> Response {
    let fields = Fields::parse(&Bytes::from(q.unwrap_or_default()));
    if let Some(id) = fields.get("id") {
        return match id.trim().parse::<JobId>() {
            Ok(id) => Redirect::to(&format!("{}/jobs/{id}", page.base)).into_response(),
            Err(_) => failure(
                StatusCode::BAD_REQUEST,
                &format!("{id:?} is not a job id: ids are whole numbers"),
            ),
        };
    }
    let filter = match JobsFilter::read(&fields) {
        Ok(f) => f,
        Err(e) => return failure(StatusCode::BAD_REQUEST, &e),
    };
    let before = fields.get("before").and_then(|b| b.parse::<JobId>().ok());
    let after = fields.get("after").and_then(|b| b.parse::<JobId>().ok());
    let oldest = fields.get("order") == Some("oldest");
    let mut sf = filter.store_filter().limit(PAGE);
    if oldest {
        sf = sf.oldest_first();
    }
    if let Some(b) = before {
        sf = sf.before(b);
    }
    if let Some(a) = after {
        sf = sf.after(a);
    }
    let store = app.store();
    let now = app.now().await;
    let all = filter.store_filter();
    let (rows, count) = tokio::join!(
        bounded(&app, store.list(&sf)),
        bounded(&app, store.count_up_to(&all, app.config.match_count_limit))
    );
    let base = &page.base;
    let mut q = filter.query();
    if oldest {
        q = if q.is_empty() {
            "order=oldest".into()
        } else {
            format!("{q}&order=oldest")
        };
    }
    let content = html! {
        h1 { "Jobs" }
        form.filters method="get" action={ (base) "/jobs" } {
            label { "State " select name="state" {
                option value="" { "any" }
                @for s in JobState::ALL {
                    option value=(s.as_str()) selected[filter.state == Some(s)] { (s.as_str()) }
                }
            } }
            label { "Queue " input name="queue" value=[filter.queue.as_deref()]; }
            label { "Kind " input name="kind" value=[filter.kind.as_deref()]; }
            label { "Tag " input name="tag" value=[filter.tag.as_deref()]; }
            label { "Order " select name="order" {
                option value="" { "newest first" }
                option value="oldest" selected[oldest] { "oldest first" }
            } }
            button type="submit" { "Filter" }
        }
        form.filters method="get" action={ (base) "/jobs" } {
            label { "Job id " input name="id" inputmode="numeric"; }
            button type="submit" { "Open" }
        }
        p #count {
            @match &count {
                Ok(n) if *n > app.config.match_count_limit => { "More than " (app.config.match_count_limit) " jobs match " (filter.describe()) "." },
                Ok(n) => { (n) " jobs match " (filter.describe()) "." },
                Err(e) => (degraded("Count", e)),
            }
        }
        @match &rows {
            Err(e) => (degraded("Jobs", e)),
            Ok(rows) => {
                form method="post" action={ (base) "/jobs/bulk" } #bulk {
                    (layout::csrf(&page))
                    (filter.hidden())
                    table.grid #jobs {
                        thead { tr {
                            @if !page.read_only() { th { span.sr { "Select" } } }
                            th.num { "Id" } th { "Kind" } th { "Queue" } th { "State" }
                            th.num { "Attempt" } th { "Run at" } th { "Tags" }
                        } }
                        tbody {
                            @for r in rows {
                                tr data-id=(r.id) {
                                    @if !page.read_only() {
                                        td { input type="checkbox" name="ids" value=(r.id) aria-label={ "select job " (r.id) }; }
                                    }
                                    td.num { a href={ (base) "/jobs/" (r.id) } { (r.id) } }
                                    td { (r.kind) }
                                    td { (r.queue) }
                                    td { (layout::state(r.state)) @if r.corrupt.is_some() { " " span.state.corrupt { "corrupt row" } } }
                                    td.num { (r.attempt) "/" (r.max_attempts) }
                                    td { (layout::when(r.run_at, now)) }
                                    td { @for t in &r.tags { span.tag { (t) } " " } }
                                }
                            }
                            @if rows.is_empty() { tr { td colspan="8" { "No jobs match." } } }
                        }
                    }
                    @if !page.read_only() && !rows.is_empty() {
                        div.bulk {
                            label { "Action " select name="action" {
                                option value="retry" { "Retry" }
                                option value="cancel" { "Cancel" }
                                option value="delete" { "Delete" }
                            } }
                            button type="submit" name="scope" value="selected" { "Apply to selected" }
                            button type="submit" name="scope" value="filter" { "Apply to all matching…" }
                        }
                    }
                }
                @if rows.len() as u32 == PAGE {
                    @if let Some(last) = rows.last() {
                        @if oldest {
                            p { a #next href={ (base) "/jobs?" (q) "&after=" (last.id) } { "Newer jobs →" } }
                        } @else {
                            p { a #next href={ (base) "/jobs?" (q) @if !q.is_empty() { "&" } "before=" (last.id) } { "Older jobs →" } }
                        }
                    }
                }
                @if before.is_some() || after.is_some() {
                    p { a href={ (base) "/jobs" @if !q.is_empty() { "?" (q) } } { @if oldest { "← Oldest" } @else { "← Newest" } } }
                }
            }
        }
    };
    layout::page(&page, "Jobs", true, content).into_response()
}

/// A bulk action: without `confirm`, a preview of how many jobs it would touch; with it,
/// the action itself, recorded in the audit log.
pub(crate) async fn bulk(State(app): State<App>, Action { page, fields: f }: Action) -> Response {
    let Some(action) = f.get("action").and_then(JobAction::parse) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "choose an action: retry, cancel or delete",
        );
    };
    let filter = match JobsFilter::read(&f) {
        Ok(filter) => filter,
        Err(e) => return failure(StatusCode::BAD_REQUEST, &e),
    };
    let by_filter = f.get("scope") == Some("filter");
    let ids: Vec<JobId> = f.all("ids").filter_map(|i| i.parse().ok()).collect();
    if !by_filter && ids.is_empty() {
        return failure(
            StatusCode::BAD_REQUEST,
            "no job selected: tick some jobs, or apply to all matching",
        );
    }
    let limit = app.config.bulk_limit;
    let target = if by_filter {
        format!("filter {}", filter.describe())
    } else {
        format!("{} selected jobs", ids.len())
    };
    if f.get("confirm") != Some("yes") {
        let n = if by_filter {
            bounded(
                &app,
                app.store()
                    .count_up_to(&filter.for_action(action), app.config.match_count_limit),
            )
            .await
        } else {
            Ok(ids.len() as u64)
        };
        let content = html! {
            h1 { "Confirm: " (action.as_str()) " " (target) }
            p #preview {
                @match &n {
                    Ok(n) if *n > app.config.match_count_limit => { "This will " (action.as_str()) " more than " strong #preview-count { (app.config.match_count_limit) } " jobs" " (at most " (limit) " in one run)." },
                    Ok(n) => { "This will " (action.as_str()) " " strong #preview-count { (n) } " jobs"
                        @if *n > u64::from(limit) { " (at most " (limit) " in one run)" } "." },
                    Err(e) => (degraded("Count", e)),
                }
                @if filter.state.is_none() { " Only jobs " (action.as_str()) " applies to are counted (" (action.default_states().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) ")." }
                " Jobs that change state meanwhile are left as they are."
            }
            form method="post" action={ (page.base) "/jobs/bulk" } {
                (layout::csrf(&page))
                (filter.hidden())
                input type="hidden" name="action" value=(action.as_str());
                input type="hidden" name="scope" value=(if by_filter { "filter" } else { "selected" });
                @for id in &ids { input type="hidden" name="ids" value=(id); }
                input type="hidden" name="confirm" value="yes";
                button #confirm type="submit" class="danger" { "Yes, " (action.as_str()) }
                " " a href={ (page.base) "/jobs?" (filter.query()) } { "No, go back" }
            }
        };
        return layout::page(&page, "Confirm", false, content).into_response();
    }
    let (mut done, mut skipped, mut errors) = (0u64, Vec::new(), Vec::new());
    let mut visit = |id, r: Result<Applied, String>| match r {
        Ok(Applied::Done) => done += 1,
        Ok(Applied::Skipped(why)) => skipped.push(why),
        Err(e) => errors.push(format!("job {id}: {e}")),
    };
    let mut more = false;
    if by_filter {
        let mut before = None;
        let mut seen = 0u32;
        'pages: loop {
            let mut sf = filter.for_action(action).limit(500);
            if let Some(b) = before {
                sf = sf.before(b);
            }
            let rows = match app.store().list(&sf).await {
                Ok(rows) => rows,
                Err(e) => {
                    errors.push(format!("listing jobs: {e}"));
                    break;
                }
            };
            let Some(last) = rows.last() else { break };
            before = Some(last.id);
            for r in rows {
                if seen == limit {
                    more = true;
                    break 'pages;
                }
                seen += 1;
                visit(r.id, apply(&app, action, r.id).await);
            }
        }
    } else {
        for &id in ids.iter().take(limit as usize) {
            visit(id, apply(&app, action, id).await);
        }
        more = ids.len() > limit as usize;
    }
    let summary = format!(
        "{done} {}, {} skipped, {} failed{}",
        action.past(),
        skipped.len(),
        errors.len(),
        if more {
            "; more jobs match: run it again"
        } else {
            ""
        }
    );
    let audit_failed = app
        .audit(
            &page.actor,
            &format!("jobs.{}", action.as_str()),
            &target,
            &summary,
        )
        .await;
    let content = html! {
        h1 { "Done: " (action.as_str()) " " (target) }
        p #result { (summary) }
        @if let Some(e) = audit_failed { (degraded("Audit", &e)) }
        @if !errors.is_empty() { h2 { "Failed" } ul { @for e in &errors { li { (e) } } } }
        @if !skipped.is_empty() {
            h2 { "Skipped" }
            ul { @for s in skipped.iter().take(100) { li { (s) } } }
            @if skipped.len() > 100 { p { "… and " (skipped.len() - 100) " more." } }
        }
        p { a href={ (page.base) "/jobs?" (filter.query()) } { "Back to the jobs" } }
    };
    layout::page(&page, "Done", false, content).into_response()
}
