//! The workers page: the store's worker registry, live, with the maintenance leader marked
//! and workers that stopped reporting shown as silent.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use errand::MAINTENANCE_LEADER;
use maud::html;

use crate::app::{App, Page};
use crate::layout::{self, degraded};
use crate::pages::overview::bounded;

pub(crate) async fn list(State(app): State<App>, page: Page) -> Response {
    let now = app.now().await;
    let (workers, leader) = tokio::join!(
        bounded(&app, app.store().workers()),
        bounded(&app, app.store().leader(MAINTENANCE_LEADER))
    );
    let leader = leader
        .ok()
        .flatten()
        .filter(|l| l.expires_at > now)
        .map(|l| l.holder);
    let content = html! {
        h1 { "Workers" }
        @match &workers {
            Err(e) => (degraded("Workers", e)),
            Ok(workers) => {
                p #workers-summary {
                    (workers.iter().filter(|w| w.is_alive(now)).count()) " alive"
                    @let silent = workers.iter().filter(|w| !w.is_alive(now)).count();
                    @if silent > 0 { ", " (silent) " silent (no report for three of its intervals, 30 s by default: killed, frozen or cut off; forgotten after an hour)" }
                    "."
                }
                table.grid #workers {
                    thead { tr {
                        th { "Worker" } th { "Host" } th.num { "Pid" } th { "Version" } th { "Queues" }
                        th.num { "Holding" } th { "Started" } th { "Last report" } th { "Status" }
                    } }
                    tbody {
                        @for w in workers {
                            tr data-worker=(w.id) {
                                td { code { (w.id) } }
                                td { (w.host) }
                                td.num { (w.pid) }
                                td { (w.version) }
                                td { @for q in &w.queues { span.tag { (q.name) " × " (q.concurrency) } " " } }
                                td.num { (w.running) }
                                td { (layout::when(w.started_at, now)) }
                                td { (layout::ago(w.heartbeat_at, now)) }
                                td.status {
                                    @if w.is_alive(now) { "alive" } @else { span.state.discarded { "silent" } }
                                    @if leader.as_deref() == Some(w.id.as_str()) { " " span.state.running { "leader" } }
                                }
                            }
                        }
                        @if workers.is_empty() { tr { td colspan="9" { "No worker has registered: none is running." } } }
                    }
                }
            }
        }
    };
    layout::page(&page, "Workers", true, content).into_response()
}
