//! `errand dashboard` and `errand audit` as processes: an open address without
//! authentication is refused, the served dashboard never shows the database password, and
//! the CLI's own actions land in the audit log.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use common::{Db, Worker};
use errand::{Client, JobState};
use errand_cli::chaos::LedgerJob;

mod common;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const AUTH_VARS: [&str; 4] = [
    "ERRAND_DASHBOARD_USER",
    "ERRAND_DASHBOARD_PASSWORD",
    "ERRAND_DASHBOARD_TOKEN",
    "ERRAND_DASHBOARD_READ_ONLY",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_address_without_authentication_is_refused() {
    let db = Db::sqlite().await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_errand"));
    for v in AUTH_VARS {
        cmd.env_remove(v);
    }
    let o = cmd
        .args(&db.args)
        .args(["dashboard", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("refusing to serve the dashboard on 0.0.0.0:0"),
        "{err}"
    );
    assert!(err.contains("ERRAND_DASHBOARD_USER"), "says how: {err}");
    // Half a credential is an error too, not an open dashboard.
    let o = Command::new(env!("CARGO_BIN_EXE_errand"))
        .env("ERRAND_DASHBOARD_USER", "ops")
        .env_remove("ERRAND_DASHBOARD_PASSWORD")
        .args(&db.args)
        .args(["dashboard", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("set both"), "{}", stderr(&o));
}

/// Starts `errand dashboard` on a free loopback port with `args` (the database); returns the
/// process, its first line of output and the address it serves.
fn start_dashboard(args: &[String]) -> (Worker, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_errand"));
    for v in AUTH_VARS {
        cmd.env_remove(v);
    }
    let mut child = cmd
        .args(args)
        .args(["dashboard", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let out = child.stdout.take().unwrap();
    // Killed when dropped: a failing test never leaves it holding the run's output open.
    let child = Worker(child);
    BufReader::new(out).read_line(&mut first).unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("an address in {first:?}"))
        .to_owned();
    (child, first, addr)
}

/// `GET path` over HTTP/1.1 on `addr`; status line and body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dashboard_serves_without_showing_the_password() {
    let db = Db::postgres().await;
    Client::new(db.store())
        .enqueue(LedgerJob { work_ms: 0 })
        .await
        .unwrap();
    // The local server trusts any password: give the URL one to leak.
    let mut args = db.args.clone();
    let url = &mut args[1];
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap();
    let user = user.split(':').next().unwrap();
    *url = format!("{scheme}://{user}:hunter2-secret@{host}");
    let (mut child, first, addr) = start_dashboard(&args);
    assert!(!first.contains("hunter2"), "the password printed: {first}");
    assert!(first.contains("postgres://"), "{first}");
    let (status, body) = http_get(&addr, "/");
    assert!(status.contains("200"), "{status}");
    assert!(
        body.contains("Overview") && body.contains("chaos"),
        "{body}"
    );
    assert!(!body.contains("hunter2"));
    let (status, _) = http_get(&addr, "/jobs?state=available");
    assert!(status.contains("200"), "{status}");
    let _ = Command::new("kill").arg(child.0.id().to_string()).status();
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "stops cleanly on SIGTERM: {exit:?}");
}

async fn cli_actions_are_in_the_audit_log(db: Db) {
    let client = Client::new(db.store());
    let job = client.enqueue(LedgerJob { work_ms: 0 }).await.unwrap();
    let id = job.id.to_string();
    let o = db.errand(&["jobs", "cancel", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = db.errand(&["jobs", "cancel", &id, "--dry-run"]);
    assert!(o.status.success());
    let o = db.errand(&["queues", "pause", "chaos"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = db.errand(&["audit", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(log.len(), 2, "dry runs and reads are not recorded: {log:?}");
    assert_eq!(log[0]["action"], "cli.queue.pause");
    assert_eq!(log[0]["target"], "queue chaos");
    assert_eq!(log[1]["action"], "cli.jobs.cancel");
    assert_eq!(log[1]["target"], format!("job {id}"));
    assert!(
        log[1]["detail"].as_str().unwrap().contains("cancelled"),
        "{log:?}"
    );
    assert!(log[1]["actor"].as_str().unwrap().starts_with("cli:"));
    assert_eq!(
        client.get(job.id).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    let table = db.errand(&["audit"]);
    assert!(
        stdout(&table).contains("cli.jobs.cancel"),
        "{}",
        stdout(&table)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cli_actions_are_in_the_audit_log() {
    cli_actions_are_in_the_audit_log(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cli_actions_are_in_the_audit_log() {
    cli_actions_are_in_the_audit_log(Db::postgres().await).await;
}

async fn workers_list_shows_the_registry(db: Db) {
    use errand::{WorkerQueue, WorkerRecord};
    let store = db.store();
    let now = store.now(chrono::Utc::now()).await;
    let q = vec![WorkerQueue {
        name: "chaos".into(),
        concurrency: 8,
    }];
    let w = WorkerRecord::new(
        "host-a:42:beef",
        "host-a",
        42,
        "0.1.0",
        q,
        now,
        now,
        5,
        10_000,
    );
    store.register_worker(&w).await.unwrap();
    let o = db.errand(&["workers", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("host-a:42:beef") && text.contains("chaos×8") && text.contains("alive"),
        "{text}"
    );
    let o = db.errand(&["workers", "list", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc[0]["running"], 5);
    assert_eq!(doc[0]["alive"], true);
    assert_eq!(doc[0]["leader"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_workers_list() {
    workers_list_shows_the_registry(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_workers_list() {
    workers_list_shows_the_registry(Db::postgres().await).await;
}

/// Three worker processes register; one killed with SIGKILL turns silent after three of
/// its presence intervals while the others stay alive; one stopped with SIGTERM removes its
/// record.
async fn workers_list_follows_real_processes(db: Db) {
    db.ledger().await;
    let mut procs: Vec<Worker> = (0..3)
        .map(|_| db.worker(&["--presence-ms", "200", "--concurrency", "2"]))
        .collect();
    let list = |db: &Db| {
        let o = db.errand(&["workers", "list", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<Vec<serde_json::Value>>(&stdout(&o)).unwrap()
    };
    let pid_of = |w: &serde_json::Value| w["pid"].as_u64().unwrap() as u32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let l = list(&db);
        if l.len() == 3 && l.iter().all(|w| w["alive"] == true) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "three workers registered: {l:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let table = db.errand(&["workers", "list"]);
    println!("{}", stdout(&table));
    let killed = procs[0].0.id();
    procs[0].0.kill().unwrap();
    procs[0].0.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let l = list(&db);
        let dead = l
            .iter()
            .find(|w| pid_of(w) == killed)
            .expect("still listed");
        if dead["alive"] == false {
            assert_eq!(l.iter().filter(|w| w["alive"] == true).count(), 2, "{l:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the killed worker turned silent: {l:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let table = db.errand(&["workers", "list"]);
    println!("{}", stdout(&table));
    assert!(stdout(&table).contains("silent"), "{}", stdout(&table));
    let stopped = procs[1].0.id();
    let _ = Command::new("kill").arg(stopped.to_string()).status();
    assert!(procs[1].0.wait().unwrap().success());
    let l = list(&db);
    assert!(
        l.iter().all(|w| pid_of(w) != stopped),
        "a stopped worker removed itself: {l:?}"
    );
    assert_eq!(l.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_workers_list_follows_real_processes() {
    workers_list_follows_real_processes(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_workers_list_follows_real_processes() {
    workers_list_follows_real_processes(Db::postgres().await).await;
}

/// A page that gives up on a read blocked by another session's lock also ends the
/// statement on the server (the dashboard's connections carry a statement_timeout), instead
/// of leaving it waiting as long as the lock is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_blocked_read_is_stopped_on_the_server_too() {
    let db = Db::postgres().await;
    let errand::AnyStore::Postgres(pg) = &db.backend else {
        unreachable!()
    };
    Client::new(db.store())
        .enqueue(LedgerJob { work_ms: 0 })
        .await
        .unwrap();
    let (mut child, _, addr) = start_dashboard(&db.args);
    let mut locker = pg.pool().begin().await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{}\".jobs IN ACCESS EXCLUSIVE MODE",
        pg.schema()
    ))
    .execute(&mut *locker)
    .await
    .unwrap();
    let page = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || http_get(&addr, "/")
    })
    .await
    .unwrap();
    assert!(page.0.contains("200"), "{}", page.0);
    assert!(page.1.contains("took longer than 2000 ms"), "{}", page.1);
    // While the lock is still held, no dashboard statement is left waiting on it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'errand-dashboard' AND state = 'active'",
        )
        .fetch_one(pg.pool())
        .await
        .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} dashboard statements still waiting on the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    locker.rollback().await.unwrap();
    let _ = Command::new("kill").arg(child.0.id().to_string()).status();
    child.0.wait().unwrap();
}
