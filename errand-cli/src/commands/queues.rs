//! `errand queues list|pause|resume`.

use std::collections::BTreeMap;
use std::io::Write;

use errand::store::Store;
use errand::JobState;

use crate::output::{table, time};
use crate::{CliError, QueuesCommand};

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
            queue, max_running, ..
        } => {
            store.set_queue_limit(&queue, max_running, now).await?;
            match max_running {
                Some(n) => writeln!(
                    out,
                    "queue {queue}: at most {n} running at once, across every worker"
                )?,
                None => writeln!(out, "queue {queue}: no limit")?,
            }
        }
        QueuesCommand::List { json } => list(store, json, out).await?,
    }
    Ok(())
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
            let limit = r.and_then(|r| r.max_running);
            let mut row = vec![
                name.clone(),
                state(*r).to_owned(),
                limit.map_or("-".to_owned(), |n| n.to_string()),
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
