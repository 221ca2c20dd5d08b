//! The dashboard in a real browser: Debian's headless Chromium driven through ChromeDriver
//! (WebDriver, by fantoccini), against a real SQLite file and a real Postgres schema seeded
//! with jobs in every state. Screenshots of each step are written to
//! `$CARGO_TARGET_TMPDIR/dashboard-screenshots/<store>/` as test artefacts.
//!
//! Needs `chromium` and `chromedriver` (Debian packages `chromium` and `chromium-driver`;
//! `.ci/run` installs them when missing). Without them the test fails saying so.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{seed, Seeded};
use errand::store::Store;
use errand::{JobState, ListFilter};
use fantoccini::{Client, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// ChromeDriver on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver() -> Driver {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(tool).exists(),
            "the browser test needs {tool}: install Debian's chromium and chromium-driver \
             (apt-get install -y chromium chromium-driver; .ci/run does this)"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    fantoccini::ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session through chromedriver")
}

/// Serves `router` on a free loopback port; the server stops with the runtime.
async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

struct Shots {
    dir: PathBuf,
    n: u32,
}

impl Shots {
    fn new(store: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("dashboard-screenshots")
            .join(store);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Shots { dir, n: 0 }
    }

    async fn take(&mut self, c: &Client, name: &str) {
        self.n += 1;
        let png = c.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(self.dir.join(format!("{:02}-{name}.png", self.n)), png).unwrap();
    }
}

/// Polls `cond` every 50 ms for up to 10 s.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the first element `css` selects (found again if a refresh replaced it
/// between finding and reading).
async fn text(c: &Client, css: &str) -> String {
    let mut tries = 0;
    loop {
        let read = match c.find(Locator::Css(css)).await {
            Ok(el) => el.text().await,
            Err(e) => Err(e),
        };
        match read {
            Ok(t) => return t,
            Err(e) if tries >= 5 => panic!("{css}: {e}"),
            Err(_) => tries += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks `button` (its class) in `queue`'s row and waits for the row to say `status`;
/// the store must agree.
async fn toggle_queue(c: &Client, store: &dyn Store, queue: &str, button: &str, status: &str) {
    let row = format!(r#"tr[data-queue="{queue}"]"#);
    c.find(Locator::Css(&format!("{row} button.{button}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let cell = format!("{row} td.status");
    eventually(&format!("{queue} shows {status}"), || async {
        c.find(Locator::Css(&cell)).await.is_ok() && text(c, &cell).await == status
    })
    .await;
    let paused = store
        .queues()
        .await
        .unwrap()
        .iter()
        .any(|q| q.name == queue && q.paused);
    assert_eq!(paused, status == "paused", "the store agrees");
}

async fn no_dialog(c: &Client, page: &str) {
    assert!(
        c.get_alert_text().await.is_err(),
        "{page}: a dialog opened (job data ran as script)"
    );
}

async fn walk_through(store: Arc<dyn Store>, name: &str) {
    let s: Seeded = seed(&*store).await;
    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let config = errand_web::Config::new().refresh(Duration::from_millis(300));
    let addr = serve(errand_web::router(store.clone(), config)).await;
    let base = format!("http://{addr}");
    let c = browser(&driver, profile.path()).await;
    let mut shots = Shots::new(name);

    // Overview: counts per queue and state.
    c.goto(&format!("{base}/")).await.unwrap();
    let reports = text(&c, r#"tr[data-queue="reports"]"#).await;
    assert!(reports.starts_with("reports"), "{reports}");
    assert!(text(&c, r#"tr[data-queue="mail"]"#).await.contains('3'));
    shots.take(&c, "overview").await;

    // Live: a job enqueued now appears without a reload; paused, the next one does not.
    let now = store.now(chrono::Utc::now()).await;
    store
        .insert(vec![common::job("Ping", "live", "{}", now)], now)
        .await
        .unwrap();
    eventually("the overview shows the new queue by itself", || async {
        c.find(Locator::Css(r#"tr[data-queue="live"]"#))
            .await
            .is_ok()
    })
    .await;
    c.find(Locator::Id("live-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(&c, "#live-toggle").await, "Resume live updates");
    store
        .insert(vec![common::job("Ping", "live2", "{}", now)], now)
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_millis(1500); // five refresh periods
    while Instant::now() < until {
        assert!(
            c.find(Locator::Css(r#"tr[data-queue="live2"]"#))
                .await
                .is_err(),
            "a paused page changed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Live updates stay paused from here (the choice is kept in this browser), so the
    // steps below never hold an element a refresh just replaced.

    // Jobs: filter by state with the form.
    c.goto(&format!("{base}/jobs")).await.unwrap();
    c.find(Locator::Css(r#"select[name="state"]"#))
        .await
        .unwrap()
        .select_by_value("discarded")
        .await
        .unwrap();
    c.find(Locator::XPath("//button[text()='Filter']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the filtered list", || async {
        c.current_url()
            .await
            .unwrap()
            .as_str()
            .contains("state=discarded")
    })
    .await;
    assert!(text(&c, "#count")
        .await
        .starts_with("2 jobs match state=discarded"));
    shots.take(&c, "jobs-discarded").await;

    // A discarded job: open it, retry it, see its state change (page and store).
    c.find(Locator::LinkText(&s.discarded.to_string()))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(&c, "#state").await, "discarded");
    assert!(text(&c, "#errors")
        .await
        .contains("report template missing"));
    shots.take(&c, "job-discarded").await;
    c.find(Locator::Css("button.retry"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the job page shows it available", || async {
        c.find(Locator::Id("state")).await.ok().is_some() && text(&c, "#state").await == "available"
    })
    .await;
    assert_eq!(
        store.get(s.discarded).await.unwrap().unwrap().state,
        JobState::Available
    );
    shots.take(&c, "job-retried").await;

    // Hostile job data renders as text: no dialog, no script but the dashboard's own.
    c.goto(&format!("{base}/jobs/{}", s.hostile)).await.unwrap();
    no_dialog(&c, "job page").await;
    assert!(text(&c, "#args")
        .await
        .contains("<script>alert('xss')</script>"));
    assert!(text(&c, "#errors")
        .await
        .contains("<img src=x onerror=alert(1)>"));
    let scripts = c
        .execute("return document.scripts.length", vec![])
        .await
        .unwrap();
    assert_eq!(scripts, serde_json::json!(1), "only live.js");
    let imgs = c
        .execute("return document.images.length", vec![])
        .await
        .unwrap();
    assert_eq!(imgs, serde_json::json!(0), "no <img> from job data");
    shots.take(&c, "job-hostile").await;
    c.goto(&format!("{base}/jobs?queue=hostile")).await.unwrap();
    no_dialog(&c, "jobs page").await;

    // Queues: pause and resume.
    c.goto(&format!("{base}/queues")).await.unwrap();
    toggle_queue(&c, &*store, "mail", "pause", "paused").await;
    shots.take(&c, "queue-paused").await;
    toggle_queue(&c, &*store, "mail", "resume", "running").await;

    // Bulk: cancel everything the filter queue=mail matches, after a preview.
    c.goto(&format!("{base}/jobs?queue=mail")).await.unwrap();
    c.find(Locator::Css(r#"select[name="action"]"#))
        .await
        .unwrap()
        .select_by_value("cancel")
        .await
        .unwrap();
    c.find(Locator::Css(r#"button[value="filter"]"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the preview", || async {
        c.find(Locator::Id("preview-count")).await.is_ok()
    })
    .await;
    assert_eq!(text(&c, "#preview-count").await, "3");
    shots.take(&c, "bulk-preview").await;
    c.find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the result", || async {
        c.find(Locator::Id("result")).await.is_ok()
    })
    .await;
    assert!(text(&c, "#result")
        .await
        .starts_with("3 cancelled, 0 skipped, 0 failed"));
    let cancelled = ListFilter::new().queue("mail").state(JobState::Cancelled);
    assert_eq!(store.count(&cancelled).await.unwrap(), 3);
    shots.take(&c, "bulk-done").await;

    // The audit log shows every action, newest first.
    c.goto(&format!("{base}/audit")).await.unwrap();
    let log = text(&c, "#audit").await;
    let at = |a: &str| {
        log.find(a)
            .unwrap_or_else(|| panic!("{a} in the audit log: {log}"))
    };
    assert!(at("jobs.cancel") < at("queue.resume"));
    assert!(at("queue.resume") < at("queue.pause"));
    assert!(at("queue.pause") < at("job.retry"));
    shots.take(&c, "audit").await;

    // An action without its form token is refused, and changes nothing.
    c.goto(&format!("{base}/jobs/{}", s.retryable))
        .await
        .unwrap();
    c.execute(
        "const f = document.querySelector('button.cancel').form; \
         f.querySelector('input[name=csrf]').remove(); f.submit();",
        vec![],
    )
    .await
    .unwrap();
    eventually("the refusal", || async {
        c.find(Locator::Css("p.error")).await.is_ok()
    })
    .await;
    assert!(text(&c, "p.error")
        .await
        .contains("missing or stale form token"));
    assert_eq!(
        store.get(s.retryable).await.unwrap().unwrap().state,
        JobState::Retryable
    );
    shots.take(&c, "no-token-refused").await;

    // A form on another origin (another port of this host) posting to the dashboard is
    // refused, even with a token it somehow had.
    let token = {
        c.goto(&format!("{base}/jobs/{}", s.retryable))
            .await
            .unwrap();
        c.find(Locator::Css(r#"input[name="csrf"]"#))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap()
    };
    let target = format!("{base}/jobs/{}/cancel", s.retryable);
    let evil = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move {
            axum::response::Html(format!(
                r#"<form method="post" action="{target}"><input type="hidden" name="csrf" value="{token}"><button id="go">win a prize</button></form>"#
            ))
        }),
    );
    let evil = serve(evil).await;
    c.goto(&format!("http://{evil}/")).await.unwrap();
    c.find(Locator::Id("go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the refusal", || async {
        c.find(Locator::Css("p.error")).await.is_ok()
    })
    .await;
    assert!(text(&c, "p.error").await.contains("request refused"));
    assert_eq!(
        store.get(s.retryable).await.unwrap().unwrap().state,
        JobState::Retryable
    );
    shots.take(&c, "cross-site-refused").await;

    c.close().await.unwrap();
    println!("screenshots: {}", shots.dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dashboard_in_a_browser() {
    let (store, _dir) = common::sqlite().await;
    walk_through(store, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dashboard_in_a_browser() {
    walk_through(common::postgres().await, "postgres").await;
}
