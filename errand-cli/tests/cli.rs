//! The `errand` binary against real SQLite files and Postgres schemas.

use std::path::Path;
use std::process::{Command, Output};

use common::Db;
use errand::{Client, JobState};
use errand_cli::chaos::LedgerJob;

mod common;

fn errand(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_errand"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .expect("run errand")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("errand.db").display())
}

#[test]
fn migrate_creates_and_reports_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let url = url(dir.path());
    let o = errand(&url, &["migrate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("schema at version 13"),
        "{}",
        stdout(&o)
    );
    assert!(dir.path().join("errand.db").exists());
    let again = errand(&url, &["migrate"]);
    assert!(
        again.status.success(),
        "migrate is idempotent: {}",
        stderr(&again)
    );
}

async fn stats_json_counts_jobs_by_queue_and_state(db: Db) {
    let client = Client::new(db.store());
    let ids = client
        .enqueue_many((0..3).map(|_| LedgerJob { work_ms: 0 }))
        .await
        .unwrap();
    client.cancel(ids[0].id).await.unwrap();
    let o = db.errand(&["stats", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    assert_eq!(doc["queues"]["chaos"]["available"], 2);
    assert_eq!(doc["queues"]["chaos"]["cancelled"], 1);
    assert_eq!(doc["queues"]["chaos"]["running"], 0);
    assert_eq!(doc["totals"]["available"], 2);
    assert_eq!(doc["total"], 3);
    let table = db.errand(&["stats"]);
    let text = stdout(&table);
    assert!(text.lines().next().unwrap().starts_with("queue"), "{text}");
    assert!(text.contains("chaos"), "{text}");
}

async fn jobs_list_show_retry_and_cancel(db: Db) {
    let store = db.store();
    let client = Client::new(store.clone());
    let ids: Vec<i64> = client
        .enqueue_many((0..4).map(|_| LedgerJob { work_ms: 0 }))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let first = ids[0].to_string();

    let o = db.errand(&["jobs", "cancel", &first]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cancelled"));
    assert_eq!(
        store.get(ids[0]).await.unwrap().unwrap().state,
        JobState::Cancelled
    );

    let o = db.errand(&["jobs", "cancel", &first]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already cancelled"), "{}", stderr(&o));

    let o = db.errand(&["jobs", "list", "--state", "available", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows
        .iter()
        .all(|r| r["state"] == "available" && r["kind"] == "errand_ledger"));

    let o = db.errand(&["jobs", "list", "--limit", "2"]);
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 3, "header + 2 rows: {text}");

    let o = db.errand(&["jobs", "retry", &first]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("available again"), "{}", stdout(&o));
    assert_eq!(
        store.get(ids[0]).await.unwrap().unwrap().state,
        JobState::Available
    );

    let o = db.errand(&["jobs", "show", &ids[1].to_string(), "--json"]);
    let job: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(job["id"], ids[1]);
    assert_eq!(job["queue"], "chaos");
    let o = db.errand(&["jobs", "show", &ids[1].to_string()]);
    let text = stdout(&o);
    assert!(
        text.contains("attempt:      0 of 20") && text.contains("\"work_ms\": 0"),
        "{text}"
    );

    // A job that reported progress and completed with a result: both shown, the result
    // as JSON in --json (not a string holding JSON), escaped text kept exact.
    let running = store
        .claim(&errand::store::ClaimRequest {
            queue: "chaos".into(),
            limit: 1,
            worker_id: "cli-test".into(),
            now: chrono::Utc::now(),
            lease: std::time::Duration::from_secs(60),
            held: None,
        })
        .await
        .unwrap()
        .remove(0);
    let progress = errand::Progress::new(1, chrono::Utc::now(), 62.5, "page 5 of 8");
    assert!(store
        .set_progress(running.lease_ref(), &progress)
        .await
        .unwrap());
    store
        .finish(&[errand::store::Finish {
            lease: running.lease_ref(),
            at: chrono::Utc::now(),
            action: errand::store::FinishAction::CompleteWith {
                result: r#"{"pages":8,"title":"<b>\"x\"</b>"}"#.into(),
            },
        }])
        .await
        .unwrap();
    let id = running.id.to_string();
    let o = db.errand(&["jobs", "show", &id, "--json"]);
    let job: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(job["result"]["pages"], 8);
    assert_eq!(job["result"]["title"], "<b>\"x\"</b>");
    assert_eq!(job["progress"]["percent"], 62.5);
    assert_eq!(job["progress"]["message"], "page 5 of 8");
    let text = stdout(&db.errand(&["jobs", "show", &id]));
    assert!(
        text.contains("progress:     62.5 %  page 5 of 8  (attempt 1")
            && text.contains("  result:\n    {\n      \"pages\": 8,"),
        "{text}"
    );

    let o = db.errand(&["jobs", "show", "999999"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no job with id 999999"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stats_json() {
    stats_json_counts_jobs_by_queue_and_state(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stats_json() {
    stats_json_counts_jobs_by_queue_and_state(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_jobs_subcommands() {
    jobs_list_show_retry_and_cancel(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_jobs_subcommands() {
    jobs_list_show_retry_and_cancel(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrate_and_unmigrated_schema() {
    let db = Db::postgres().await;
    let url = errand_postgres::testing::database_url();
    let fresh = format!("{}_fresh", db.backend.as_postgres().unwrap().schema());
    let o = errand(&url, &["--schema", &fresh, "stats"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not migrated") && stderr(&o).contains("errand migrate"),
        "{}",
        stderr(&o)
    );
    let o = errand(&url, &["--schema", &fresh, "migrate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("schema at version 13"),
        "{}",
        stdout(&o)
    );
    let o = errand(&url, &["--schema", &fresh, "stats", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let missing_db = url
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/errand_no_such_db"))
        .unwrap();
    let o = errand(&missing_db, &["stats"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn missing_database_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = errand(&url(dir.path()), &["stats"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("does not exist") && err.contains("errand migrate"),
        "{err}"
    );
    assert!(
        !dir.path().join("errand.db").exists(),
        "stats must not create the file"
    );
}

#[test]
fn bad_url_is_a_clear_error() {
    for bad in ["mysql://localhost/db", "sqlite://"] {
        let o = errand(bad, &["stats"]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&o).contains("invalid database url"),
            "{bad}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn unmigrated_database_says_to_migrate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("errand.db"), b"").unwrap();
    let o = errand(&url(dir.path()), &["jobs", "list"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("not migrated") && err.contains("errand migrate"),
        "{err}"
    );
}

/// A row made unreadable behind errand's back (a `null` jitter, as serde_json wrote NaN)
/// still lists, shows and cancels, saying what is wrong with it (issue 12, section 1).
async fn an_unreadable_row_lists_shows_and_cancels(db: Db) {
    let store = db.store();
    let id = Client::new(store.clone())
        .enqueue(LedgerJob { work_ms: 0 })
        .await
        .unwrap()
        .id;
    let corrupt = r#"{"mode":"constant","delay_ms":1000,"jitter":null}"#;
    match (db.backend.as_sqlite(), db.backend.as_postgres()) {
        (Some(s), _) => {
            sqlx::query("UPDATE errand_jobs SET backoff = ? WHERE id = ?")
                .bind(corrupt)
                .bind(id)
                .execute(s.pool())
                .await
                .unwrap();
        }
        (_, Some(s)) => {
            sqlx::query(&format!(
                "UPDATE \"{}\".jobs SET backoff = $1::jsonb WHERE id = $2",
                s.schema()
            ))
            .bind(corrupt)
            .bind(id)
            .execute(s.pool())
            .await
            .unwrap();
        }
        _ => unreachable!("a scratch database is SQLite or Postgres"),
    }
    let o = db.errand(&["jobs", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("(unreadable)"), "{}", stdout(&o));
    let o = db.errand(&["jobs", "show", &id.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("UNREADABLE:   column backoff"),
        "{}",
        stdout(&o)
    );
    let o = db.errand(&["jobs", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"corrupt\""), "{}", stdout(&o));
    let o = db.errand(&["jobs", "cancel", &id.to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("cancelled"), "{}", stdout(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_unreadable_row() {
    an_unreadable_row_lists_shows_and_cancels(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreadable_row() {
    an_unreadable_row_lists_shows_and_cancels(Db::postgres().await).await;
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Digest;

impl errand::Job for Digest {
    const KIND: &'static str = "digest";
    type State = ();
    async fn run(self, _: errand::JobContext<()>) -> Result<errand::Outcome, errand::JobError> {
        Ok(errand::Outcome::Complete)
    }
}

/// `errand cron list` shows the entry a running worker carries, with its next tick read in
/// the entry's time zone (09:00 in Berlin: 07:00 or 08:00 UTC).
async fn cron_list_shows_the_next_tick(db: Db) {
    let o = db.errand(&["cron", "list"]);
    assert!(stdout(&o).contains("no cron entries"), "{}", stdout(&o));
    let worker = errand::Worker::builder(db.backend.clone(), ())
        .register::<Digest>()
        .queue("default", 1)
        .cron("morning-digest", "TZ=Europe/Berlin 0 9 * * *", Digest)
        .build()
        .unwrap()
        .start();
    let store = db.store();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store
        .count(&errand::ListFilter::new().tag("cron"))
        .await
        .unwrap()
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "no tick enqueued");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
    let o = db.errand(&["cron", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc.len(), 1, "{doc:?}");
    assert_eq!(doc[0]["entry"], "morning-digest");
    assert_eq!(doc[0]["kind"], "digest");
    assert_eq!(doc[0]["state"], "scheduled");
    let tick: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(doc[0]["next_tick"].clone()).unwrap();
    let berlin = tick.with_timezone(&chrono_tz::Europe::Berlin);
    assert_eq!(
        (
            chrono::Timelike::hour(&berlin),
            chrono::Timelike::minute(&berlin)
        ),
        (9, 0),
        "{tick}"
    );
    let text = stdout(&db.errand(&["cron", "list"]));
    assert!(
        text.contains("morning-digest") && text.contains("digest") && text.contains("in "),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cron_list() {
    cron_list_shows_the_next_tick(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cron_list() {
    cron_list_shows_the_next_tick(Db::postgres().await).await;
}
