//! Database passwords never reach an error, a log line or the CLI's output, and connection
//! failures report their real cause at once (issue 12, section 8).

use std::process::Command;
use std::time::{Duration, Instant};

use errand::PgStore;

const SECRET: &str = "S3cretPW";

/// The test database's URL with a password added (the local server trusts every login, so
/// the password is carried but not checked).
fn url_with_password(db: Option<&str>, port: Option<u16>) -> String {
    let base = errand_postgres::testing::database_url();
    let rest = base
        .strip_prefix("postgres://")
        .expect("a postgres:// DATABASE_URL");
    let (auth, hostpath) = rest.split_once('@').unwrap_or(("postgres", rest));
    let user = auth.split(':').next().unwrap();
    let (hostport, dbname) = hostpath.split_once('/').unwrap_or((hostpath, "test"));
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    let port = port.map_or_else(
        || {
            hostport
                .rsplit_once(':')
                .map_or("5432".to_owned(), |(_, p)| p.to_owned())
        },
        |p| p.to_string(),
    );
    format!(
        "postgres://{user}:{SECRET}@{host}:{port}/{}",
        db.unwrap_or(dbname)
    )
}

fn cli(url: &str, args: &[&str]) -> (String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_errand"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .expect("run errand");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Opens the store and runs the CLI on `url`; asserts the secret appears nowhere and
/// returns the library's error text and the CLI's output.
async fn attempt(url: &str) -> (Result<PgStore, String>, String) {
    let lib = PgStore::connect(url).await.map_err(|e| {
        let text = format!("{e} | {e:?}");
        assert!(
            !text.contains(SECRET),
            "library error leaks the password: {text}"
        );
        text
    });
    if let Ok(store) = &lib {
        let debug = format!("{store:?}");
        assert!(
            !debug.contains(SECRET),
            "PgStore's Debug leaks the password: {debug}"
        );
    }
    let (out, err) = cli(url, &["migrate"]);
    assert!(
        !out.contains(SECRET),
        "errand migrate prints the password: {out}"
    );
    assert!(
        !err.contains(SECRET),
        "errand migrate's error carries the password: {err}"
    );
    (lib, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_redacted_on_every_path() {
    // Success: `errand migrate` names the database it migrated.
    let (lib, cli_text) = attempt(&url_with_password(None, None)).await;
    lib.expect("the local server accepts the login");
    assert!(cli_text.contains(":***@"), "{cli_text}");

    // Nothing listens on the port: refused at once, with the cause and how to start it.
    let began = Instant::now();
    let (lib, cli_text) = attempt(&url_with_password(None, Some(1))).await;
    let err = lib.expect_err("nothing listens on port 1");
    assert!(
        began.elapsed() < Duration::from_secs(8),
        "took {:?}",
        began.elapsed()
    );
    assert!(
        err.contains("refused") && err.contains("Is it running?"),
        "{err}"
    );
    assert!(cli_text.contains("Is it running?"), "{cli_text}");

    // The database does not exist.
    let (lib, cli_text) = attempt(&url_with_password(Some("errand_no_such_db"), None)).await;
    let err = lib.expect_err("no such database");
    assert!(
        err.contains("does not exist") && err.contains(":***@"),
        "{err}"
    );
    assert!(!cli_text.is_empty());

    // The URL does not parse.
    let bad = url_with_password(None, None).replace(":5432/", ":notaport/");
    let (lib, _) = attempt(&bad).await;
    let err = lib.expect_err("bad port");
    assert!(err.contains("invalid database url"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_is_reported_as_full_not_as_down() {
    let admin = errand_postgres::testing::scratch_store().await;
    // A role allowed no connection at all stands for a server with no slot free: both
    // answer SQLSTATE 53300 (too_many_connections).
    sqlx::query(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'errand_full') THEN
             CREATE ROLE errand_full LOGIN CONNECTION LIMIT 0;
           END IF;
         END $$",
    )
    .execute(admin.pool())
    .await
    .unwrap();
    let url = url_with_password(None, None).replacen(
        "postgres://postgres:",
        "postgres://errand_full:",
        1,
    );
    assert!(
        url.contains("errand_full"),
        "DATABASE_URL must use user postgres: {url}"
    );
    let began = Instant::now();
    let (lib, _) = attempt(&url).await;
    let err = lib.expect_err("the role has no connection slot");
    assert!(
        began.elapsed() < Duration::from_secs(8),
        "took {:?}",
        began.elapsed()
    );
    assert!(
        err.contains("too many connections") && err.contains("no connection slot"),
        "{err}"
    );
    assert!(!err.contains("Is it running"), "{err}");
}
