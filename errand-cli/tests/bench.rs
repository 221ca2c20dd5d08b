//! `errand bench` at a tiny size: the JSON shape and the exactly-once counts (not the speed).

use std::process::Command;

fn bench_json(url: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_errand"))
        .args([
            "--database-url",
            url,
            "bench",
            "--jobs",
            "200",
            "--latency-samples",
            "10",
        ])
        .args(["--idle-secs", "1", "--json"])
        .output()
        .expect("run errand bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

fn check_shape(doc: &serde_json::Value, store: &str) {
    assert_eq!(doc["store"], store);
    assert_eq!(doc["jobs"], 200);
    assert_eq!(doc["concurrency"], 10);
    for side in ["errand", "raw"] {
        for key in [
            "enqueue_single_per_s",
            "enqueue_batch_per_s",
            "process_per_s",
        ] {
            let v = doc[side][key]
                .as_f64()
                .unwrap_or_else(|| panic!("{side}.{key}: {doc}"));
            assert!(v > 0.0, "{side}.{key} = {v}");
        }
        for p in ["p50", "p95", "p99"] {
            assert!(
                doc[side]["latency_ms"][p].as_f64().is_some(),
                "{side}.latency_ms.{p}: {doc}"
            );
        }
        let lat = &doc[side]["latency_ms"];
        let (p50, floor) = (lat["p50"].as_f64(), lat["floor_ms"].as_f64());
        assert!(
            p50.zip(floor).is_some_and(|(p50, floor)| p50 >= floor),
            "{side}: latency p50 below the floor the bench measured: {doc}"
        );
        assert_eq!(doc[side]["duplicates"], 0, "{side} ran a job twice: {doc}");
        assert_eq!(doc[side]["lost"], 0, "{side} lost a job: {doc}");
    }
    for key in ["idle_queries_per_s", "idle_cpu_pct", "peak_rss_mb"] {
        assert!(doc["errand"][key].as_f64().is_some(), "errand.{key}: {doc}");
    }
    for key in ["enqueue_single", "enqueue_batch", "process"] {
        assert!(
            doc["ratio"][key].as_f64().is_some_and(|r| r > 0.0),
            "ratio.{key}: {doc}"
        );
    }
}

#[test]
fn sqlite_bench_reports_every_field_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let doc = bench_json(&url);
    check_shape(&doc, "sqlite");
    assert!(
        doc["ratio"].get("enqueue_copy").is_none(),
        "no COPY on SQLite: {doc}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "scratch files removed: {left:?}");
}

#[tokio::test]
async fn postgres_bench_reports_every_field_and_cleans_up() {
    let url = errand_postgres::testing::database_url();
    let doc = bench_json(&url);
    check_shape(&doc, "postgres");
    check_bloat_phase(&url);
    check_fleet_phase(&url);
    // A fleet the server cannot admit is refused before any worker starts, saying how to
    // raise the limit (and its scratch schema goes, as the check below sees).
    let out = Command::new(env!("CARGO_BIN_EXE_errand"))
        .args(["--database-url", &url, "bench", "--phases", "fleet"])
        .args(["--fleet-workers", "1000", "--json"])
        .output()
        .expect("run errand bench");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_connections"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Postgres only: the raw queue's single insert without NOTIFY, and large batches
    // against its binary COPY.
    for (side, key) in [
        ("raw", "enqueue_single_no_notify_per_s"),
        ("raw", "enqueue_copy_per_s"),
        ("errand", "enqueue_copy_per_s"),
        ("ratio", "enqueue_copy"),
    ] {
        assert!(
            doc[side][key].as_f64().is_some_and(|v| v > 0.0),
            "{side}.{key}: {doc}"
        );
    }
    let store = errand_postgres::testing::scratch_store().await;
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'errand\\_bench\\_%'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(left.is_empty(), "scratch schemas removed: {left:?}");
}

/// `--phases bloat` at a tiny size on Postgres: three windows with their figures, and every
/// job offered ran once. (Called by the Postgres test above, before it checks that no scratch
/// schema is left: run beside it, its schema would be counted.)
fn check_bloat_phase(url: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_errand"))
        .args(["--database-url", url, "bench", "--phases", "bloat"])
        .args(["--bloat-secs", "1,1,1", "--bloat-rate", "200", "--json"])
        .output()
        .expect("run errand bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let windows = doc["bloat"]["windows"].as_array().expect("windows");
    assert_eq!(
        (&doc["bloat"]["not_started"], &doc["bloat"]["duplicates"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "{doc}"
    );
    let names: Vec<&str> = windows.iter().filter_map(|w| w["name"].as_str()).collect();
    assert_eq!(names, ["clean", "held", "after"], "{doc}");
    for w in windows {
        assert_eq!(w["offered_per_s"], 200.0, "{w}");
        assert!(w["started_per_s"].as_f64().is_some_and(|s| s > 0.0), "{w}");
        assert!(
            w["pickup_ms"]["p50"].as_f64().is_some_and(|p| p > 0.0),
            "{w}"
        );
        assert!(w["dead_tuples"].as_i64().is_some(), "{w}");
    }
}

/// `--phases fleet` at a tiny size on Postgres: fleets of one and two idle worker processes,
/// each registered, counted and holding connections, the second with its allowance (one a
/// second per follower plus the first's). (Called by the Postgres test above, like the
/// bloat phase.)
fn check_fleet_phase(url: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_errand"))
        .args(["--database-url", url, "bench", "--phases", "fleet"])
        .args(["--fleet-workers", "1,2", "--fleet-warmup-secs", "0"])
        // Over 10 s: an idle backend's counts may wait that long to reach the statistics.
        .args(["--fleet-secs", "12", "--json"])
        .output()
        .expect("run errand bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sizes = doc["fleet"]["sizes"].as_array().expect("sizes");
    let workers: Vec<u64> = sizes.iter().filter_map(|s| s["workers"].as_u64()).collect();
    assert_eq!(workers, [1, 2], "{doc}");
    for s in sizes {
        let n = s["workers"].as_i64().unwrap();
        // Each worker's pool and its LISTEN connection at least; a worker that starts
        // issues statements (its registry report, its lease, its first claims).
        assert!(s["connections"].as_i64().is_some_and(|c| c >= 2 * n), "{s}");
        assert!(
            s["transactions_per_s"].as_f64().is_some_and(|t| t > 0.0),
            "{s}"
        );
        assert!(
            s["registered_after_s"].as_f64().is_some_and(|t| t > 0.0),
            "{s}"
        );
    }
    let first = sizes[0]["transactions_per_s"].as_f64().unwrap();
    assert!(sizes[0]["allowed_per_s"].is_null(), "{doc}");
    assert_eq!(
        sizes[1]["allowed_per_s"].as_f64(),
        Some(first + 1.0),
        "{doc}"
    );
}

/// The bloat and fleet phases measure Postgres: on SQLite they are refused, saying what
/// they need.
#[test]
fn the_postgres_phases_are_refused_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("b.db").display());
    for phase in ["bloat", "fleet"] {
        let out = Command::new(env!("CARGO_BIN_EXE_errand"))
            .args(["--database-url", &sqlite, "bench", "--phases", phase])
            .output()
            .expect("run errand bench");
        assert!(!out.status.success(), "{phase}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("postgres://"),
            "{phase}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
