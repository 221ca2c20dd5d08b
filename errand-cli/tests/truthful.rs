//! The CLI tells the truth (issue 13, section 5): every hint is a command that works, every
//! error names what is wrong, and output behaves as Unix tools' do.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use common::Db;
use errand::{Client, JobState};
use errand_cli::chaos::LedgerJob;

mod common;

fn errand(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_errand"))
        .env_remove("ERRAND_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .args(args)
        .output()
        .expect("run errand")
}

/// Claims up to `limit` jobs of the chaos queue now, as a worker would.
async fn claim_now(store: &dyn errand::store::Store, limit: u32) -> Vec<errand::JobRow> {
    store
        .claim(&errand::store::ClaimRequest {
            queue: errand_cli::CHAOS_QUEUE.into(),
            limit,
            worker_id: "t".into(),
            now: chrono::Utc::now(),
            lease: std::time::Duration::from_secs(30),
            held: None,
        })
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn unknown_schemes_and_bad_schema_names_are_named_as_such() {
    for url in ["mysql://localhost/db", "http://example.invalid/"] {
        let o = errand(&["--database-url", url, "stats"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let t = text(&o);
        assert!(
            t.contains("sqlite://") && t.contains("postgres://") && t.contains("postgresql://"),
            "{t}"
        );
    }
    let url = errand_postgres::testing::database_url();
    let o = errand(&["--database-url", &url, "--schema", "Errand", "stats"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("invalid schema name 'Errand'"),
        "{}",
        text(&o)
    );
}

#[test]
fn migrate_reports_what_it_applied_and_the_hint_before_it_works() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("e.db").display());
    let o = errand(&["--database-url", &url, "stats"]);
    assert_eq!(o.status.code(), Some(2));
    // The hint is a command: run it as printed.
    let t = text(&o);
    let hint = t
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in: {t}"));
    let words: Vec<&str> = hint.split_whitespace().collect();
    assert_eq!(words[0], "errand", "{hint}");
    let o = errand(&words[1..]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("created the database file"), "{t}");
    assert!(t.contains("applied migrations 1, 2, 3, 4"), "{t}");
    let o = errand(&["--database-url", &url, "migrate"]);
    assert!(text(&o).contains("nothing to apply"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hints_are_commands_that_work() {
    let db = Db::postgres().await;
    let url = errand_postgres::testing::database_url();
    let schema = format!("{}_hint", db.args[3]);
    let o = errand(&["--database-url", &url, "--schema", &schema, "stats"]);
    let t = text(&o);
    let hint = t.split('`').nth(1).unwrap_or_else(|| panic!("{t}"));
    assert!(hint.contains(&format!("--schema {schema}")), "{hint}");
    // Run it as a shell would (the URL is quoted).
    let o = Command::new("sh")
        .arg("-c")
        .arg(hint.replacen("errand", env!("CARGO_BIN_EXE_errand"), 1))
        .output()
        .unwrap();
    assert!(o.status.success(), "{hint}: {}", text(&o));
    assert!(
        text(&o).contains("applied migrations 1, 2, 3"),
        "{}",
        text(&o)
    );
    // Again, logging at INFO: the schema exists, and the server's notice saying so is not
    // printed on every start.
    let o = Command::new(env!("CARGO_BIN_EXE_errand"))
        .env("RUST_LOG", "info")
        .args(["--database-url", &url, "--schema", &schema, "migrate"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("up to date (nothing to apply)"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("already exists"), "{}", text(&o));
    // A database that does not exist: how to create it, said once.
    let missing = url
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/errand_no_such_db"))
        .unwrap();
    let o = errand(&["--database-url", &missing, "migrate"]);
    let t = text(&o);
    assert!(
        t.contains("createdb") && t.contains("errand_no_such_db"),
        "{t}"
    );
    assert_eq!(t.matches("does not exist").count(), 1, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_output_behaves() {
    let db = Db::sqlite().await;
    let url = db.args[1].clone();
    let client = Client::new(db.store());
    let ids: Vec<_> = client
        .enqueue_many((0..1500).map(|_| LedgerJob { work_ms: 0 }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    // `--limit 0` is refused, not read as 100.
    let o = errand(&["--database-url", &url, "jobs", "list", "--limit", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A reader that stops early (`| head -1`) ends the command quietly.
    let mut child = Command::new(env!("CARGO_BIN_EXE_errand"))
        .args(["--database-url", &url, "jobs", "list", "--limit", "10000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("id"), "{first}");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(o.stderr.is_empty(), "{}", text(&o));
    // `--json` carries the payload as JSON.
    let o = errand(&[
        "--database-url",
        &url,
        "jobs",
        "show",
        &ids[0].to_string(),
        "--json",
    ]);
    let job: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(job["args"]["work_ms"], 0, "{job}");
    // $DATABASE_URL is read when neither the flag nor $ERRAND_DATABASE_URL is set.
    let o = Command::new(env!("CARGO_BIN_EXE_errand"))
        .env_remove("ERRAND_DATABASE_URL")
        .env("DATABASE_URL", &url)
        .args(["stats", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1500"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_completed_job_needs_force() {
    let db = Db::sqlite().await;
    let url = db.args[1].clone();
    let store = db.store();
    let id = Client::new(store.clone())
        .enqueue(LedgerJob { work_ms: 0 })
        .await
        .unwrap()
        .id;
    let claimed = claim_now(&*store, 1).await;
    store
        .finish(&[errand::store::Finish {
            lease: claimed[0].lease_ref(),
            at: chrono::Utc::now(),
            action: errand::store::FinishAction::Complete,
        }])
        .await
        .unwrap();
    let o = errand(&["--database-url", &url, "jobs", "retry", &id.to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(
        store.get(id).await.unwrap().unwrap().state,
        JobState::Completed
    );
    let o = errand(&[
        "--database-url",
        &url,
        "jobs",
        "retry",
        &id.to_string(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        store.get(id).await.unwrap().unwrap().state,
        JobState::Available
    );
}

#[test]
fn files_that_cannot_be_opened_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no/such/folder/e.db");
    let o = errand(&["--database-url", missing_dir.to_str().unwrap(), "migrate"]);
    let t = text(&o);
    assert!(!o.status.success());
    assert!(
        t.contains(missing_dir.to_str().unwrap()) && t.contains("folder exist"),
        "{t}"
    );
    let not_db = dir.path().join("notes.txt");
    std::fs::write(
        &not_db,
        "these are not the tables you are looking for\n".repeat(100),
    )
    .unwrap();
    let o = errand(&["--database-url", not_db.to_str().unwrap(), "stats"]);
    let t = text(&o);
    assert!(!o.status.success());
    assert!(
        t.contains(not_db.to_str().unwrap()) && t.contains("not a SQLite database"),
        "{t}"
    );
}

async fn bulk_operations_select_by_filter(db: Db) {
    let store = db.store();
    let client = Client::new(store.clone());
    client
        .enqueue_many((0..10).map(|_| LedgerJob { work_ms: 0 }))
        .await
        .unwrap();
    for _ in 0..5 {
        client
            .enqueue_with(
                LedgerJob { work_ms: 0 },
                errand::JobOptions::new().queue("other"),
            )
            .await
            .unwrap();
    }
    let cli = |args: &[&str]| db.errand(args);
    let o = cli(&["jobs", "cancel"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("give a job id"), "{}", text(&o));
    let o = cli(&["jobs", "cancel", "--queue", "other", "--dry-run"]);
    assert!(
        text(&o).contains("would cancel 5 of 5 selected jobs"),
        "{}",
        text(&o)
    );
    assert_eq!(
        db.count(JobState::Cancelled).await,
        0,
        "a dry run changes nothing"
    );
    let o = cli(&["jobs", "cancel", "--queue", "other"]);
    assert!(
        text(&o).contains("cancelled 5 of 5 selected jobs"),
        "{}",
        text(&o)
    );
    assert_eq!(db.count(JobState::Cancelled).await, 5);
    let o = cli(&["jobs", "retry", "--state", "cancelled", "--queue", "other"]);
    assert!(
        text(&o).contains("retried 5 of 5 selected jobs"),
        "{}",
        text(&o)
    );
    assert_eq!(db.count(JobState::Available).await, 15);
    // Several states at once, and keyset paging.
    let o = cli(&[
        "jobs",
        "list",
        "--state",
        "available",
        "--state",
        "cancelled",
        "--limit",
        "4",
        "--json",
    ]);
    let page: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(page.len(), 4);
    let last = page[3]["id"].as_i64().unwrap();
    let o = cli(&[
        "jobs",
        "list",
        "--before",
        &last.to_string(),
        "--limit",
        "100",
        "--json",
    ]);
    let rest: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rest.len(), 11);
    assert!(rest.iter().all(|r| r["id"].as_i64().unwrap() < last));
    // Prune: jobs that completed two hours ago.
    let claimed = claim_now(&*store, 3).await;
    let two_hours_ago = chrono::Utc::now() - chrono::TimeDelta::hours(2);
    let done: Vec<_> = claimed
        .iter()
        .map(|r| errand::store::Finish {
            lease: r.lease_ref(),
            at: two_hours_ago,
            action: errand::store::FinishAction::Complete,
        })
        .collect();
    store.finish(&done).await.unwrap();
    let o = cli(&["prune", "--older-than", "1h", "--dry-run"]);
    assert!(
        text(&o).contains("would delete 3 final jobs"),
        "{}",
        text(&o)
    );
    // One final state at a time; a state that is not final is refused.
    let o = cli(&["prune", "--older-than", "1h", "--state", "discarded"]);
    assert!(text(&o).contains("deleted 0 final jobs"), "{}", text(&o));
    let o = cli(&["prune", "--older-than", "1h", "--state", "running"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not finished"), "{}", text(&o));
    let o = cli(&["prune", "--older-than", "3h"]);
    assert!(text(&o).contains("deleted 0 final jobs"), "{}", text(&o));
    let o = cli(&["prune", "--older-than", "1h"]);
    assert!(text(&o).contains("deleted 3 final jobs"), "{}", text(&o));
    assert_eq!(db.count(JobState::Completed).await, 0);
    let o = cli(&["prune", "--older-than", "soon"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// `--tag` selects, and `jobs delete` removes by id or by filter, never a running job.
async fn tags_select_and_delete_removes(db: Db) {
    let store = db.store();
    let client = Client::new(store.clone());
    let mut ids = Vec::new();
    for tag in ["vip", "vip", "bulk", "bulk", "bulk"] {
        let opts = errand::JobOptions::new().tag(tag);
        ids.push(
            client
                .enqueue_with(LedgerJob { work_ms: 0 }, opts)
                .await
                .unwrap()
                .id,
        );
    }
    let cli = |args: &[&str]| db.errand(args);
    let o = cli(&["jobs", "list", "--tag", "vip", "--json"]);
    let vip: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let mut got: Vec<i64> = vip.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    got.sort();
    assert_eq!(got, ids[..2]);
    // A running job is not deleted, by id or by filter.
    let running = claim_now(&*store, 1).await.remove(0).id;
    assert_eq!(running, ids[0], "the oldest is claimed first");
    let o = cli(&["jobs", "delete", &running.to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("is running: cancel it first"),
        "{}",
        text(&o)
    );
    let o = cli(&["jobs", "delete"]);
    assert!(text(&o).contains("give a job id"), "{}", text(&o));
    let o = cli(&["jobs", "delete", "--tag", "bulk", "--dry-run"]);
    assert!(
        text(&o).contains("would delete 3 of 3 selected jobs"),
        "{}",
        text(&o)
    );
    assert_eq!(
        db.count(JobState::Available).await,
        4,
        "a dry run changes nothing"
    );
    let o = cli(&["jobs", "delete", "--tag", "bulk"]);
    assert!(
        text(&o).contains("deleted 3 of 3 selected jobs"),
        "{}",
        text(&o)
    );
    let o = cli(&["jobs", "delete", "--tag", "vip"]);
    assert!(
        text(&o).contains("deleted 1 of 2 selected jobs")
            && text(&o).contains("skipped 1: running (cancel them first)"),
        "{}",
        text(&o)
    );
    let o = cli(&["jobs", "delete", &ids[2].to_string()]);
    assert_eq!(o.status.code(), Some(1), "already gone: {}", text(&o));
    assert!(store.get(ids[2]).await.unwrap().is_none());
    assert_eq!(store.count(&errand::ListFilter::new()).await.unwrap(), 1);
}

/// `errand queues`: list shows each queue's state and work; pause and resume change it.
async fn queues_list_pause_and_resume(db: Db) {
    let client = Client::new(db.store());
    client
        .enqueue_many((0..3).map(|_| LedgerJob { work_ms: 0 }))
        .await
        .unwrap();
    let cli = |args: &[&str]| db.errand(args);
    let queue = errand_cli::CHAOS_QUEUE;
    let o = cli(&["queues", "pause", queue]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("queue {queue} paused")),
        "{}",
        text(&o)
    );
    assert!(client.queues().await.unwrap()[0].paused);
    let o = cli(&["queues", "list", "--json"]);
    let doc: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc.len(), 1, "{doc:?}");
    assert_eq!(doc[0]["queue"], queue);
    assert_eq!(doc[0]["state"], "paused");
    assert_eq!(doc[0]["counts"]["available"], 3);
    let lag = doc[0]["lag_s"]
        .as_f64()
        .expect("a lag for a queue with available jobs");
    assert!((0.0..60.0).contains(&lag), "{lag}");
    let o = cli(&["queues", "resume", queue]);
    assert!(text(&o).contains("resumed"), "{}", text(&o));
    let o = cli(&["queues", "list"]);
    let t = text(&o);
    assert!(
        t.contains(queue) && t.contains("active") && !t.contains("paused"),
        "{t}"
    );
    // A fleet-wide limit, shown, then removed; zero is refused.
    let o = cli(&["queues", "set", queue, "--max-running", "4"]);
    assert!(
        text(&o).contains("at most 4 running at once"),
        "{}",
        text(&o)
    );
    let o = cli(&["queues", "list", "--json"]);
    let doc: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc[0]["max_running"], 4);
    let o = cli(&["queues", "set", queue, "--max-running", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pause the queue"), "{}", text(&o));
    // Per key and rate limits join it; a limit not named is kept; `none` removes one.
    let o = cli(&["queues", "set", queue, "--per-key", "1", "--rate", "20/s"]);
    let t = text(&o);
    assert!(
        t.contains(
            "at most 4 running at once, at most 1 running per key, at most 20 starts per 1s"
        ),
        "{t}"
    );
    let o = cli(&[
        "queues",
        "set",
        queue,
        "--max-running",
        "none",
        "--rate",
        "5/500ms",
        "--rate-per-key",
        "2/s",
    ]);
    assert!(
        text(&o).contains(
            "at most 1 running per key, at most 5 starts per 500ms, at most 2 starts per 1s per key"
        ),
        "{}",
        text(&o)
    );
    let rec = client.queues().await.unwrap().remove(0);
    assert_eq!(
        (
            rec.max_running,
            rec.max_per_key,
            rec.rate.map(|r| (r.starts, r.period))
        ),
        (
            None,
            Some(1),
            Some((5, std::time::Duration::from_millis(500)))
        )
    );
    let o = cli(&["queues", "list"]);
    assert!(text(&o).contains("1/key 5/500ms 2/1s/key"), "{}", text(&o));
    let o = cli(&["queues", "list", "--json"]);
    let doc: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc[0]["max_per_key"], 1);
    assert_eq!(doc[0]["rate"]["starts"], 5);
    assert_eq!(doc[0]["rate_per_key"]["starts"], 2);
    assert_eq!(doc[0]["rate"]["period"], 500);
    for bad in ["20", "0/s", "20/fortnight", "20/0s", "20/2d"] {
        let o = cli(&["queues", "set", queue, "--rate", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
    }
    let o = cli(&["queues", "set", queue]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a limit must be named: {}",
        text(&o)
    );
    let o = cli(&["queues", "set", queue, "--no-limit"]);
    assert!(text(&o).contains("no limit"), "{}", text(&o));
    assert_eq!(
        client.queues().await.unwrap()[0].limits(),
        Default::default()
    );
    // A name no job could have is refused as a usage error.
    let o = cli(&["queues", "pause", ""]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("invalid queue name"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_queues() {
    queues_list_pause_and_resume(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queues() {
    queues_list_pause_and_resume(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tags_and_delete() {
    tags_select_and_delete_removes(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tags_and_delete() {
    tags_select_and_delete_removes(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bulk_operations() {
    bulk_operations_select_by_filter(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bulk_operations() {
    bulk_operations_select_by_filter(Db::postgres().await).await;
}

/// `memory://` opens in the library (tests) but would show an empty store to an operator.
#[test]
fn the_cli_refuses_a_memory_store_and_says_why() {
    let o = errand(&["--database-url", "memory://", "stats"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("memory:// holds nothing another process could see"),
        "{}",
        text(&o)
    );
}
