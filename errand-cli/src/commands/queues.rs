//! `errand queues list|pause|resume`.

use std::collections::BTreeMap;
use std::io::Write;

use errand::store::Store;
use errand::{JobState, QueueLimits, RateLimit};

use crate::output::{table, time};
use crate::{Change, CliError, QueuesCommand};

/// The states a queue's listing counts (the jobs still to be done).
const SHOWN: [JobState; 4] = [
    JobState::Available,
    JobState::Running,
    JobState::Scheduled,
    JobState::Retryable,
];

pub(crate) async fn queues(
    store: &dyn Store,
    cmd: QueuesCommand,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let now = store.now(chrono::Utc::now()).await;
    match cmd {
        QueuesCommand::Pause { queue } => {
            store.set_queue_paused(&queue, true, now).await?;
            writeln!(
                out,
                "queue {queue} paused: workers start none of its jobs (running ones finish); \
                 `errand queues resume {queue}` to go on"
            )?;
        }
        QueuesCommand::Resume { queue } => {
            store.set_queue_paused(&queue, false, now).await?;
            writeln!(out, "queue {queue} resumed")?;
        }
        QueuesCommand::Set {
            queue,
            max_running,
            per_key,
            rate,
            rate_per_key,
            no_limit,
        } => {
            let old = store
                .queues()
                .await?
                .into_iter()
                .find(|r| r.name == queue)
                .map(|r| r.limits())
                .unwrap_or_default();
            let limits = if no_limit {
                QueueLimits::default()
            } else {
                QueueLimits {
                    max_running: change(max_running, old.max_running),
                    max_per_key: change(per_key, old.max_per_key),
                    rate: change(rate, old.rate),
                    rate_per_key: change(rate_per_key, old.rate_per_key),
                }
            };
            let record = store.set_queue_limits(&queue, &limits, now).await?;
            writeln!(out, "queue {queue}: {}", describe(&record.limits()))?;
        }
        QueuesCommand::List { json } => list(store, json, out).await?,
    }
    Ok(())
}

/// A setting after an optional change.
fn change<T>(c: Option<Change<T>>, old: Option<T>) -> Option<T> {
    match c {
        None => old,
        Some(Change::Set(v)) => Some(v),
        Some(Change::Clear) => None,
    }
}

/// Limits as a sentence: "at most 3 running at once, at most 1 running per key, at most 20
/// starts per 1s; across every worker", or "no limit".
pub(crate) fn describe(l: &QueueLimits) -> String {
    let mut parts = Vec::new();
    if let Some(n) = l.max_running {
        parts.push(format!("at most {n} running at once"));
    }
    if let Some(n) = l.max_per_key {
        parts.push(format!("at most {n} running per key"));
    }
    if let Some(r) = l.rate {
        parts.push(rate(&r));
    }
    if let Some(r) = l.rate_per_key {
        parts.push(format!("{} per key", rate(&r)));
    }
    if parts.is_empty() {
        return "no limit".into();
    }
    format!("{}; across every worker", parts.join(", "))
}

/// `20 starts per 1s`.
fn rate(r: &RateLimit) -> String {
    format!("at most {} starts per {}", r.starts, millis(r.period))
}

/// A period as the CLI writes it: `1s`, `500ms`, `1m`, `1h`.
fn millis(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

async fn list(store: &dyn Store, json: bool, out: &mut impl Write) -> Result<(), CliError> {
    let records = store.queues().await?;
    let counts = store.stats(&SHOWN).await?;
    let now = store.now(chrono::Utc::now()).await;
    // How long each queue's oldest available job has been due (0 for one due later).
    let lag: BTreeMap<String, f64> = store
        .oldest_available()
        .await?
        .into_iter()
        .map(|(q, at)| (q, (now - at).num_milliseconds().max(0) as f64 / 1000.0))
        .collect();
    // Every queue that has jobs to do or a record.
    let mut queues: BTreeMap<String, (Option<&errand::QueueRecord>, BTreeMap<&str, u64>)> =
        BTreeMap::new();
    let zero = || SHOWN.iter().map(|s| (s.as_str(), 0)).collect();
    for c in &counts {
        let entry = queues
            .entry(c.queue.clone())
            .or_insert_with(|| (None, zero()));
        *entry.1.entry(c.state.as_str()).or_default() += c.count;
    }
    for r in &records {
        queues
            .entry(r.name.clone())
            .or_insert_with(|| (None, zero()))
            .0 = Some(r);
    }
    let state = |r: Option<&errand::QueueRecord>| {
        if r.is_some_and(|r| r.paused) {
            "paused"
        } else {
            "active"
        }
    };
    if json {
        let doc: Vec<serde_json::Value> = queues
            .iter()
            .map(|(name, (r, c))| {
                serde_json::json!({
                    "queue": name,
                    "state": state(*r),
                    "max_running": r.and_then(|r| r.max_running),
                    "max_per_key": r.and_then(|r| r.max_per_key),
                    "rate": r.and_then(|r| r.rate),
                    "rate_per_key": r.and_then(|r| r.rate_per_key),
                    "lag_s": lag.get(name),
                    "since": r.map(|r| r.updated_at),
                    "counts": c,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("JSON"))?;
        return Ok(());
    }
    if queues.is_empty() {
        writeln!(out, "no queues: no job waits, and none was ever paused")?;
        return Ok(());
    }
    let mut header = vec!["queue", "state", "limit", "lag"];
    header.extend(SHOWN.iter().map(|s| s.as_str()));
    header.push("since");
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|(name, (r, c))| {
            let mut limits = Vec::new();
            if let Some(n) = r.and_then(|r| r.max_running) {
                limits.push(n.to_string());
            }
            if let Some(n) = r.and_then(|r| r.max_per_key) {
                limits.push(format!("{n}/key"));
            }
            if let Some(rt) = r.and_then(|r| r.rate) {
                limits.push(format!("{}/{}", rt.starts, millis(rt.period)));
            }
            if let Some(rt) = r.and_then(|r| r.rate_per_key) {
                limits.push(format!("{}/{}/key", rt.starts, millis(rt.period)));
            }
            let mut row = vec![
                name.clone(),
                state(*r).to_owned(),
                if limits.is_empty() {
                    "-".to_owned()
                } else {
                    limits.join(" ")
                },
                lag.get(name).map_or("-".to_owned(), |s| format!("{s:.1}s")),
            ];
            row.extend(SHOWN.iter().map(|s| c[s.as_str()].to_string()));
            row.push(r.map(|r| time(r.updated_at)).unwrap_or_default());
            row
        })
        .collect();
    table(out, &header, &rows)?;
    Ok(())
}
