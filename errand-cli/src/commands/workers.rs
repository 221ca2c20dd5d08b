//! `errand workers list`: the worker registry.

use std::io::Write;

use errand::store::Store;
use errand::MAINTENANCE_LEADER;

use crate::output::table;
use crate::CliError;

pub(crate) async fn list(
    store: &dyn Store,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let now = store.now(chrono::Utc::now()).await;
    let workers = store.workers().await?;
    let leader = store
        .leader(MAINTENANCE_LEADER)
        .await?
        .filter(|l| l.expires_at > now)
        .map(|l| l.holder);
    if json {
        let doc: Vec<serde_json::Value> = workers
            .iter()
            .map(|w| {
                let mut v = serde_json::to_value(w).expect("JSON");
                v["alive"] = w.is_alive(now).into();
                v["leader"] = (leader.as_deref() == Some(w.id.as_str())).into();
                v
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("JSON"))?;
        return Ok(());
    }
    if workers.is_empty() {
        writeln!(
            out,
            "no worker has registered (none running, or all stopped)"
        )?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let silent = (now - w.heartbeat_at).num_milliseconds() as f64 / 1000.0;
            let mut status = if w.is_alive(now) {
                "alive".to_owned()
            } else {
                format!("silent {silent:.1} s")
            };
            if leader.as_deref() == Some(w.id.as_str()) {
                status.push_str(", leader");
            }
            vec![
                w.id.clone(),
                w.host.clone(),
                w.pid.to_string(),
                w.version.clone(),
                w.queues
                    .iter()
                    .map(|q| format!("{}×{}", q.name, q.concurrency))
                    .collect::<Vec<_>>()
                    .join(" "),
                w.running.to_string(),
                w.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                status,
            ]
        })
        .collect();
    table(
        out,
        &[
            "id",
            "host",
            "pid",
            "version",
            "queues",
            "holding",
            "started (UTC)",
            "status",
        ],
        &rows,
    )?;
    Ok(())
}
