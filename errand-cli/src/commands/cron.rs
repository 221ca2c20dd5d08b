//! `errand cron list`: each cron entry's next tick, read from the store. A running worker
//! enqueues each entry's next tick ahead of its time (tagged `cron` and `cron:<name>`), so
//! the pending ticks are the entries the live workers carry; an entry whose tick is past due
//! and not started has no worker running it.

use std::collections::BTreeMap;
use std::io::Write;

use errand::store::Store;
use errand::{JobRow, JobState, ListFilter};

use crate::output::{table, time};
use crate::CliError;

/// The pending ticks looked at (each entry has one or two: the next, and one running).
const MAX_PENDING: u32 = 1_000;

pub(crate) async fn list(
    store: &dyn Store,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let filter = [
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
    ]
    .into_iter()
    .fold(ListFilter::new().tag("cron").limit(MAX_PENDING), |f, s| {
        f.state(s)
    });
    let pending = store.list(&filter).await?;
    let now = store.now(chrono::Utc::now()).await;
    // Per entry, its earliest pending tick (listing is newest first).
    let mut entries: BTreeMap<String, &JobRow> = BTreeMap::new();
    for row in &pending {
        let Some(name) = row.tags.iter().find_map(|t| t.strip_prefix("cron:")) else {
            continue;
        };
        let e = entries.entry(name.to_owned()).or_insert(row);
        if row.run_at < e.run_at {
            *e = row;
        }
    }
    let due = |r: &JobRow| {
        let s = (r.run_at - now).num_milliseconds() as f64 / 1000.0;
        if s >= 0.0 {
            format!("in {s:.1}s")
        } else {
            format!("{:.1}s late", -s)
        }
    };
    if json {
        let doc: Vec<serde_json::Value> = entries
            .iter()
            .map(|(name, r)| {
                serde_json::json!({
                    "entry": name,
                    "kind": r.kind,
                    "queue": r.queue,
                    "next_tick": r.run_at,
                    "state": r.state,
                    "job_id": r.id,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("JSON"))?;
        return Ok(());
    }
    if entries.is_empty() {
        writeln!(
            out,
            "no cron entries: no worker carrying one has run against this database lately"
        )?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|(name, r)| {
            vec![
                name.clone(),
                r.kind.clone(),
                r.queue.clone(),
                time(r.run_at),
                due(r),
                r.state.to_string(),
                r.id.to_string(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "entry",
            "kind",
            "queue",
            "next tick (UTC)",
            "due",
            "state",
            "job",
        ],
        &rows,
    )?;
    Ok(())
}
