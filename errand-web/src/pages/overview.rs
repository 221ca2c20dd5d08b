//! The overview: every queue's jobs by state, its lag (age of the oldest available job),
//! whether it is paused, and which worker leads maintenance.

use std::collections::BTreeMap;
use std::future::Future;

use axum::extract::State;
use errand::{JobState, MAINTENANCE_LEADER};
use maud::{html, Markup};

use crate::app::{App, Page};
use crate::layout::{self, degraded};
use crate::pages::counts::Counts;

#[derive(Default)]
struct QueueLine {
    counts: [u64; JobState::ALL.len()],
    lag_secs: Option<i64>,
    paused: bool,
}

/// A store read bounded by the page's query timeout: `Err` says why it is missing.
pub(crate) async fn bounded<T, E: std::fmt::Display>(
    app: &App,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(app.config.query_timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "took longer than {} ms; shown without it",
            app.config.query_timeout.as_millis()
        )),
    }
}

pub(crate) async fn show(State(app): State<App>, page: Page) -> Markup {
    let store = app.store();
    let now = app.now().await;
    let (counts, oldest, records, leader, workers, minutes) = tokio::join!(
        Counts::read(&app),
        bounded(&app, store.oldest_available()),
        bounded(&app, store.queues()),
        bounded(&app, store.leader(MAINTENANCE_LEADER)),
        bounded(&app, store.workers()),
        bounded(
            &app,
            store.finished_per_minute(crate::pages::chart::since(now))
        ),
    );
    let mut lines: BTreeMap<String, QueueLine> = BTreeMap::new();
    let mut notes = Vec::new();
    for (q, c) in &counts.queues {
        lines.entry(q.clone()).or_default().counts = *c;
    }
    for (state, e) in &counts.missing {
        notes.push(degraded(&format!("Counts of {state} jobs"), e));
    }
    match &oldest {
        Ok(oldest) => {
            for (q, t) in oldest {
                lines.entry(q.clone()).or_default().lag_secs = Some((now - *t).num_seconds());
            }
        }
        Err(e) => notes.push(degraded("Lag", e)),
    }
    match &records {
        Ok(records) => {
            for r in records {
                lines.entry(r.name.clone()).or_default().paused = r.paused;
            }
        }
        Err(e) => notes.push(degraded("Queue records", e)),
    }
    let mut totals = [0u64; JobState::ALL.len()];
    for l in lines.values() {
        for (t, c) in totals.iter_mut().zip(l.counts) {
            *t += c;
        }
    }
    let base = &page.base;
    let content = html! {
        h1 { "Overview" }
        @for n in &notes { (n) }
        @if !counts.capped.is_empty() {
            p.note #capped {
                "Counted up to " (app.config.count_limit) " jobs per state: "
                (counts.capped.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
                " passed it, so those numbers are lower bounds (≥)."
            }
        }
        table.grid #queues {
            thead { tr {
                th { "Queue" }
                @for s in JobState::ALL { th.num { (s.as_str()) } }
                th.num { "Lag" }
                th { "Status" }
            } }
            tbody {
                @for (name, l) in &lines {
                    tr data-queue=(name) {
                        td { a href={ (base) "/jobs?queue=" (urlenc(name)) } { (name) } }
                        @for (i, s) in JobState::ALL.iter().enumerate() {
                            td.num {
                                @if l.counts[i] > 0 {
                                    a href={ (base) "/jobs?queue=" (urlenc(name)) "&state=" (s.as_str()) } { (counts.show(*s, l.counts[i])) }
                                } @else if counts.missing.iter().any(|(m, _)| m == s) { "?" } @else { "0" }
                            }
                        }
                        td.num { (l.lag_secs.map(layout::lag).unwrap_or_else(|| "–".into())) }
                        td { @if l.paused { span.state.paused { "paused" } } @else { "running" } }
                    }
                }
                @if lines.is_empty() {
                    tr { td colspan=(JobState::ALL.len() + 3) { "No jobs and no queues yet." } }
                }
            }
            tfoot { tr {
                th { "All queues" }
                @for (i, t) in totals.iter().enumerate() { th.num { (counts.show(JobState::ALL[i], *t)) } }
                th {} th {}
            } }
        }
        h2 { "Throughput" }
        @match &minutes {
            Ok(m) => (crate::pages::chart::chart(m, now)),
            Err(e) => (degraded("Throughput", e)),
        }
        p.note { "Tallied by the maintenance leader every 30 s, 10 s behind." }
        h2 { "Workers" }
        @match &workers {
            Ok(w) => p #workers-alive {
                a href={ (base) "/workers" } { (w.iter().filter(|w| w.is_alive(now)).count()) " alive" }
                @let held: u64 = w.iter().filter(|w| w.is_alive(now)).map(|w| u64::from(w.running)).sum();
                ", holding " (held) " jobs."
            },
            Err(e) => (degraded("Workers", e)),
        }
        h2 { "Maintenance" }
        @match &leader {
            Ok(Some(l)) if l.expires_at > now => p #leader {
                "Led by worker " code { (l.holder) } " since " (layout::when(l.elected_at, now))
                "; lease ends " (layout::ago(l.expires_at, now)) "."
            },
            Ok(_) => p #leader { "No worker leads maintenance now (no worker is running, or the last one stopped)." },
            Err(e) => (degraded("Leader", e)),
        }
    };
    layout::page(&page, "Overview", true, content)
}

/// A value for a query string.
pub(crate) fn urlenc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}
