//! The audit log: every action taken from the dashboard or the CLI, newest first.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::app::{App, Page};
use crate::layout::{self, degraded};
use crate::pages::overview::bounded;

const PAGE: u32 = 100;

#[derive(serde::Deserialize)]
pub(crate) struct Params {
    before: Option<i64>,
}

pub(crate) async fn list(State(app): State<App>, page: Page, Query(p): Query<Params>) -> Response {
    let now = app.now().await;
    let entries = bounded(&app, app.store().audit_log(PAGE, p.before)).await;
    let content = html! {
        h1 { "Audit log" }
        @match &entries {
            Err(e) => (degraded("Audit log", e)),
            Ok(entries) => {
                table.grid #audit {
                    thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Outcome" } } }
                    tbody {
                        @for e in entries {
                            tr {
                                td { (layout::when(e.at, now)) }
                                td { (e.actor) }
                                td { code { (e.action) } }
                                td { (e.target) }
                                td { (e.detail) }
                            }
                        }
                        @if entries.is_empty() { tr { td colspan="5" { "No action recorded yet." } } }
                    }
                }
                @if entries.len() as u32 == PAGE {
                    @if let Some(last) = entries.last() {
                        p { a href={ (page.base) "/audit?before=" (last.id) } { "Older entries →" } }
                    }
                }
            }
        }
    };
    layout::page(&page, "Audit log", false, content).into_response()
}
