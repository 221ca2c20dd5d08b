use std::collections::BTreeMap;
use std::io::Write;

use errand::store::Store;
use errand::JobState;

use crate::output::table;
use crate::CliError;

pub(crate) async fn stats(
    store: &dyn Store,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let counts = store.stats(&[]).await?;
    let mut queues: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    let mut totals: BTreeMap<&'static str, u64> =
        JobState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for c in &counts {
        let q = queues
            .entry(c.queue.clone())
            .or_insert_with(|| JobState::ALL.iter().map(|s| (s.as_str(), 0)).collect());
        *q.get_mut(c.state.as_str()).expect("every state present") += c.count;
        *totals
            .get_mut(c.state.as_str())
            .expect("every state present") += c.count;
    }
    let total: u64 = totals.values().sum();
    if json {
        let doc = serde_json::json!({ "queues": queues, "totals": totals, "total": total });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("JSON"))?;
        return Ok(());
    }
    if queues.is_empty() {
        writeln!(out, "no jobs")?;
        return Ok(());
    }
    let mut header = vec!["queue"];
    header.extend(JobState::ALL.iter().map(|s| s.as_str()));
    header.push("total");
    let row = |name: &str, m: &BTreeMap<&'static str, u64>| {
        let mut r = vec![name.to_owned()];
        r.extend(JobState::ALL.iter().map(|s| m[s.as_str()].to_string()));
        r.push(m.values().sum::<u64>().to_string());
        r
    };
    let mut rows: Vec<Vec<String>> = queues.iter().map(|(q, m)| row(q, m)).collect();
    rows.push(row("(all)", &totals));
    table(out, &header, &rows)?;
    Ok(())
}
