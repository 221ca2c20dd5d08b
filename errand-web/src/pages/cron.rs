//! The cron page: each entry the live workers carry (from its pending tick in the store:
//! workers enqueue each entry's next tick ahead of time, tagged `cron` and `cron:<name>`),
//! its next tick, and its last runs.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use errand::{JobRow, JobState, ListFilter};
use maud::html;

use crate::app::{App, Page};
use crate::layout::{self, degraded};
use crate::pages::overview::bounded;

/// The pending ticks looked at (each entry has one or two: the next, and one running).
const MAX_PENDING: u32 = 1_000;
/// Last runs shown per entry.
const RECENT: u32 = 5;

pub(crate) async fn list(State(app): State<App>, page: Page) -> Response {
    let now = app.now().await;
    let pending = JobState::ALL
        .into_iter()
        .filter(|s| !s.is_final())
        .fold(ListFilter::new().tag("cron").limit(MAX_PENDING), |f, s| {
            f.state(s)
        });
    let pending = bounded(&app, app.store().list(&pending)).await;
    // Per entry, its earliest pending tick (lists are newest first).
    let mut entries: BTreeMap<String, JobRow> = BTreeMap::new();
    for row in pending.iter().flatten() {
        let Some(name) = row.tags.iter().find_map(|t| t.strip_prefix("cron:")) else {
            continue;
        };
        let e = entries
            .entry(name.to_owned())
            .or_insert_with(|| row.clone());
        if row.run_at < e.run_at {
            *e = row.clone();
        }
    }
    let mut recent = BTreeMap::new();
    for name in entries.keys() {
        let f = JobState::ALL.into_iter().filter(|s| s.is_final()).fold(
            ListFilter::new().tag(format!("cron:{name}")).limit(RECENT),
            |f, s| f.state(s),
        );
        recent.insert(name.clone(), bounded(&app, app.store().list(&f)).await);
    }
    let base = &page.base;
    let content = html! {
        h1 { "Cron" }
        @if let Err(e) = &pending { (degraded("Pending ticks", e)) }
        @if entries.is_empty() && pending.is_ok() {
            p { "No cron entries: no worker carrying one has run against this store lately." }
        }
        @for (name, r) in &entries {
            section.cron data-entry=(name) {
                h2 { (name) }
                table.fields {
                    tr { th { "Job" } td { (r.kind) " on " a href={ (base) "/jobs?queue=" (crate::pages::overview::urlenc(&r.queue)) } { (r.queue) } } }
                    tr { th { "Next tick" } td.next {
                        (layout::when(r.run_at, now)) " "
                        @if r.run_at < now && r.state != JobState::Running {
                            span.state.discarded { "late: no worker is running it" }
                        } @else {
                            (layout::state(r.state))
                        }
                        " " a href={ (base) "/jobs/" (r.id) } { "job " (r.id) }
                    } }
                }
                @match recent.get(name) {
                    Some(Ok(runs)) if !runs.is_empty() => {
                        table.grid {
                            thead { tr { th.num { "Job" } th { "Tick" } th { "State" } th { "Finished" } } }
                            tbody {
                                @for run in runs {
                                    tr {
                                        td.num { a href={ (base) "/jobs/" (run.id) } { (run.id) } }
                                        td { (layout::when(run.run_at, now)) }
                                        td { (layout::state(run.state)) }
                                        td { @if let Some(t) = run.finalized_at { (layout::ago(t, now)) } }
                                    }
                                }
                            }
                        }
                    },
                    Some(Err(e)) => (degraded("Last runs", e)),
                    _ => p { "No finished run kept." },
                }
            }
        }
    };
    layout::page(&page, "Cron", true, content).into_response()
}
