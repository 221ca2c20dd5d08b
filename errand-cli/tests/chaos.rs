//! `errand chaos` at a small size: 1,000 jobs, 2 worker processes, 3 SIGKILLs (and on
//! Postgres a cut of every worker connection): nothing lost, repeats only where a kill
//! explains them.

use std::process::Command;

fn chaos(url: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_errand"))
        .args([
            "--database-url",
            url,
            "chaos",
            "--jobs",
            "1000",
            "--workers",
            "2",
        ])
        .args([
            "--kills",
            "3",
            "--duration",
            "2",
            "--work-ms",
            "100",
            // Long enough that a live worker on a loaded 2-core CI machine never loses its
            // lease (a stall past the lease makes a repeat no kill explains).
            "--lease-ms",
            "3000",
            "--json",
        ])
        .output()
        .expect("run errand chaos");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "JSON on stdout ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "chaos failed: {doc}");
    eprintln!("{doc}");
    doc
}

fn check(doc: &serde_json::Value) {
    assert_eq!(doc["pass"], true, "{doc}");
    assert_eq!(doc["lost"], 0, "{doc}");
    assert_eq!(doc["completed"], 1000, "{doc}");
    assert_eq!(doc["kills"], 3, "{doc}");
    let dup = doc["duplicate_runs"].as_u64().unwrap();
    let held = doc["in_flight_at_kills"].as_u64().unwrap();
    assert!(dup <= held, "{dup} repeats, {held} held at kills: {doc}");
    // Every worker registered, and the fleet's rate from then on was measured.
    let ready = doc["workers_ready_s"].as_f64().expect("workers registered");
    assert!(ready < doc["elapsed_s"].as_f64().unwrap(), "{doc}");
    assert!(
        doc["jobs_per_s_when_ready"].as_f64().unwrap() > 0.0,
        "{doc}"
    );
}

#[test]
fn sqlite_chaos_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chaos.db").display());
    let doc = chaos(&url);
    check(&doc);
    // Nothing but kills happened here, so every repeat is a run a killed worker held. (On
    // Postgres a connection cut can lose the acknowledgement of a committed ledger row, and
    // the job then rightly runs again.)
    assert_eq!(
        doc["unexplained_repeats"], 0,
        "repeats no kill explains: {doc}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "scratch removed"
    );
}

#[test]
fn postgres_chaos_loses_nothing() {
    let doc = chaos(&errand_postgres::testing::database_url());
    check(&doc);
    assert!(doc["backends_terminated"].as_u64().unwrap() > 0, "{doc}");
}
