//! Plain-text tables and job details for people; `--json` output is serde's.

use std::io::Write;

use chrono::{DateTime, Utc};
use errand::JobRow;

/// Writes rows as left-aligned columns under a header.
pub(crate) fn table(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line =
        |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> std::io::Result<()> {
            let mut s = String::new();
            for (i, (cell, w)) in cells.zip(&widths).enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                s.push_str(cell);
                s.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
            writeln!(out, "{}", s.trim_end())
        };
    line(out, &mut header.iter().copied())?;
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "-".into())
}

/// One line of at most `max` characters.
pub(crate) fn short(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut t: String = one_line.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A JSON column, indented under its name (as stored when it is not JSON).
fn pretty_json(out: &mut impl Write, name: &str, text: &str) -> std::io::Result<()> {
    let pretty = serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_owned());
    writeln!(out, "  {name}:")?;
    for l in pretty.lines() {
        writeln!(out, "    {l}")?;
    }
    Ok(())
}

/// `jobs show` in text.
pub(crate) fn job_details(out: &mut impl Write, j: &JobRow) -> std::io::Result<()> {
    writeln!(out, "job {}  {}  ({})", j.id, j.kind, j.state)?;
    if let Some(problem) = &j.corrupt {
        writeln!(out, "  UNREADABLE:   {problem}")?;
        writeln!(
            out,
            "                (the fields named read as defaults below; repair the column, then retry the job)"
        )?;
    }
    writeln!(out, "  queue:        {}", j.queue)?;
    writeln!(out, "  priority:     {}", j.priority)?;
    writeln!(out, "  attempt:      {} of {}", j.attempt, j.max_attempts)?;
    writeln!(out, "  created at:   {}", time(j.created_at))?;
    writeln!(out, "  run at:       {}", time(j.run_at))?;
    writeln!(out, "  attempted at: {}", opt_time(j.attempted_at))?;
    writeln!(
        out,
        "  attempted by: {}",
        j.attempted_by.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "  lease until:  {}", opt_time(j.lease_expires_at))?;
    writeln!(out, "  finalized at: {}", opt_time(j.finalized_at))?;
    if let Some(k) = &j.unique_key {
        writeln!(out, "  unique key:   {k}")?;
        let states: Vec<&str> = j
            .unique_states
            .states()
            .iter()
            .map(|s| s.as_str())
            .collect();
        let period = j
            .unique_for_ms
            .map(|ms| format!(" (a final state for {} s after it finished)", ms / 1000))
            .unwrap_or_default();
        writeln!(out, "  held while:   {}{period}", states.join(", "))?;
    }
    if let Some(k) = &j.partition_key {
        writeln!(out, "  partition:    {k}")?;
    }
    if !j.tags.is_empty() {
        writeln!(out, "  tags:         {}", j.tags.join(", "))?;
    }
    if let Some(p) = &j.progress {
        let percent = p
            .percent
            .map(|v| format!("{v:.1} %"))
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "  progress:     {percent}  {}  (attempt {}, at {})",
            p.message,
            p.attempt,
            time(p.at)
        )?;
    }
    pretty_json(out, "args", &j.args)?;
    if let Some(result) = &j.result {
        pretty_json(out, "result", result)?;
    }
    if j.errors.is_empty() {
        writeln!(out, "  errors:       none")?;
    } else {
        writeln!(out, "  errors:")?;
        for e in &j.errors {
            let tag = if e.panic { " (panic)" } else { "" };
            writeln!(
                out,
                "    attempt {} at {}{tag}: {}",
                e.attempt,
                time(e.at),
                e.message
            )?;
        }
    }
    Ok(())
}
