//! The dashboard over HTTP, on a real SQLite file and a real Postgres schema (and memory):
//! pages, escaping, authentication, roles, the cross-site guards, actions and the audit
//! log they write, nesting under a path, degrading when the database is slow.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{seed, Seeded, XSS};
use errand::store::Store;
use errand::{JobState, ListFilter};
use errand_web::{Actor, Config, Role};
use http_body_util::BodyExt;
use tower::ServiceExt;

on_every_store!(
    every_page_renders_with_every_state,
    job_data_renders_as_text,
    actions_need_the_token_and_the_same_site,
    bulk_actions_preview_then_act_on_the_filter,
    the_workers_page_shows_the_registry,
    metrics_describe_the_whole_store,
    metric_gauges_equal_the_stores_counts,
    the_cron_page_shows_entries_next_ticks_and_runs,
    the_workflow_pages_draw_steps_by_state_and_cancel,
);

struct Reply {
    status: StatusCode,
    location: Option<String>,
    csp: Option<String>,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let h = |k| {
        res.headers()
            .get(k)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let location = h(header::LOCATION);
    let csp = h(header::CONTENT_SECURITY_POLICY);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        location,
        csp,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(app: &Router, path: &str) -> Reply {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, path: &str, form: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(app, req.body(Body::from(form.to_owned())).unwrap()).await
}

/// The form token a page carries.
fn token(page: &str) -> String {
    let at = page
        .find(r#"name="csrf" value=""#)
        .expect("a form token on the page")
        + 19;
    page[at..at + 48].to_owned()
}

async fn state(store: &dyn Store, id: i64) -> JobState {
    store.get(id).await.unwrap().expect("job").state
}

async fn every_page_renders_with_every_state(store: Arc<dyn Store>) {
    let s: Seeded = seed(&*store).await;
    let app = errand_web::router(store.clone(), Config::new());
    let o = get(&app, "/").await;
    assert_eq!(o.status, StatusCode::OK, "{}", o.body);
    assert!(o.csp.unwrap().contains("script-src 'self'"), "CSP set");
    let chart = &o.body[o.body.find("Finished in the last hour").expect("the chart")..];
    assert!(
        chart.contains(">1 completed<")
            && chart.contains(">2 discarded<")
            && chart.contains(">1 cancelled<"),
        "{chart}"
    );
    // reports: one scheduled, running, retryable, completed, discarded, cancelled.
    let reports = &o.body[o.body.find(r#"data-queue="reports""#).expect("reports row")..];
    let reports = &reports[..reports.find("</tr>").unwrap()];
    for st in [
        "scheduled",
        "running",
        "retryable",
        "completed",
        "discarded",
        "cancelled",
    ] {
        assert!(
            reports.contains(&format!("state={st}\">1</a>")),
            "reports has 1 {st}: {reports}"
        );
    }
    let mail = &o.body[o.body.find(r#"data-queue="mail""#).expect("mail row")..];
    assert!(
        mail[..mail.find("</tr>").unwrap()].contains("state=available\">3</a>"),
        "3 available in mail"
    );
    let jobs = get(&app, "/jobs?state=discarded").await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert!(
        jobs.body.contains("2 jobs match state=discarded"),
        "{}",
        jobs.body
    );
    assert!(jobs.body.contains(&format!(r#"data-id="{}""#, s.discarded)));
    assert!(!jobs.body.contains(&format!(r#"data-id="{}""#, s.completed)));
    let detail = get(&app, &format!("/jobs/{}", s.discarded)).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(
        detail.body.contains("report template missing"),
        "error history shown"
    );
    assert!(
        detail.body.contains("&quot;day&quot;: &quot;friday&quot;"),
        "pretty args: {}",
        detail.body
    );
    let done = get(&app, &format!("/jobs/{}", s.completed)).await;
    assert!(done.body.contains("&quot;rows&quot;: 42"), "result shown");
    assert_eq!(
        get(&app, "/jobs/999999999").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&app, "/jobs/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&app, "/jobs?state=nope").await.status,
        StatusCode::BAD_REQUEST
    );
    let found = get(&app, &format!("/jobs?id={}", s.running)).await;
    assert_eq!(
        found.location.as_deref(),
        Some(format!("/jobs/{}", s.running).as_str())
    );
    assert_eq!(get(&app, "/queues").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/audit").await.status, StatusCode::OK);
    let css = get(&app, "/assets/style.css").await;
    assert!(css.status == StatusCode::OK && css.body.contains("body"));
    let js = get(&app, "/assets/live.js").await;
    assert!(js.status == StatusCode::OK && js.body.contains("x-errand-fragment"));
    // The refresh script's request gets the live part only.
    let frag = send(
        &app,
        Request::get("/")
            .header("x-errand-fragment", "1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(
        frag.body.contains("<table") && !frag.body.contains("<html"),
        "fragment only"
    );
}

async fn job_data_renders_as_text(store: Arc<dyn Store>) {
    let s = seed(&*store).await;
    let app = errand_web::router(store.clone(), Config::new());
    for path in [
        format!("/jobs/{}", s.hostile),
        "/jobs?queue=hostile".into(),
        "/".into(),
    ] {
        let r = get(&app, &path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(
            !r.body.contains("<script>alert"),
            "{path}: a script tag from job data"
        );
        assert!(
            !r.body.contains("<img src=x"),
            "{path}: an img tag from job data"
        );
    }
    let r = get(&app, &format!("/jobs/{}", s.hostile)).await;
    assert!(
        r.body.contains("&lt;script&gt;alert("),
        "shown escaped: {}",
        r.body
    );
    // An action whose target came from hostile input is escaped in the audit log too.
    let t = token(&r.body);
    let q = format!(
        "csrf={t}&action=cancel&scope=filter&confirm=yes&kind={}",
        urlenc(XSS)
    );
    assert_eq!(
        post(&app, "/jobs/bulk", &q, &[]).await.status,
        StatusCode::OK
    );
    let audit = get(&app, "/audit").await;
    assert!(audit.body.contains("jobs.cancel"));
    assert!(!audit.body.contains("<script>alert") && !audit.body.contains("<img src=x"));
}

fn urlenc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn actions_need_the_token_and_the_same_site(store: Arc<dyn Store>) {
    let s = seed(&*store).await;
    let app = errand_web::router(store.clone(), Config::new());
    let page = get(&app, &format!("/jobs/{}", s.discarded)).await;
    let t = token(&page.body);
    let path = format!("/jobs/{}/retry", s.discarded);
    let refused = [
        ("", vec![]),
        ("csrf=wrong", vec![]),
        (
            &*format!("csrf={t}"),
            vec![("sec-fetch-site", "cross-site")],
        ),
        (
            &*format!("csrf={t}"),
            vec![
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:9090"),
            ],
        ),
    ];
    for (form, headers) in refused {
        let r = post(&app, &path, form, &headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form} {headers:?}");
        assert_eq!(
            state(&*store, s.discarded).await,
            JobState::Discarded,
            "nothing changed"
        );
    }
    let r = post(
        &app,
        &path,
        &format!("csrf={t}"),
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://127.0.0.1:9090"),
            ("host", "127.0.0.1:9090"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        state(&*store, s.discarded).await,
        JobState::Available,
        "retried"
    );
    // Cancel and delete; a refused delete (running) says why, and changes nothing.
    let r = post(
        &app,
        &format!("/jobs/{}/delete", s.running),
        &format!("csrf={t}"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("is running"), "{}", r.body);
    post(
        &app,
        &format!("/jobs/{}/cancel", s.scheduled),
        &format!("csrf={t}"),
        &[],
    )
    .await;
    assert_eq!(state(&*store, s.scheduled).await, JobState::Cancelled);
    let r = post(
        &app,
        &format!("/jobs/{}/delete", s.completed),
        &format!("csrf={t}"),
        &[],
    )
    .await;
    assert_eq!(r.location.as_deref(), Some("/jobs"));
    assert!(store.get(s.completed).await.unwrap().is_none(), "deleted");
    // Queues.
    post(&app, "/queues/mail/pause", &format!("csrf={t}"), &[]).await;
    let q = store.queues().await.unwrap();
    assert!(q.iter().any(|r| r.name == "mail" && r.paused), "paused");
    post(&app, "/queues/mail/resume", &format!("csrf={t}"), &[]).await;
    assert!(store
        .queues()
        .await
        .unwrap()
        .iter()
        .any(|r| r.name == "mail" && !r.paused));
    // Every action that was taken is on record, newest first, by `local`.
    let log = store.audit_log(0, None).await.unwrap();
    let got: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("local", "queue.resume", "running"),
            ("local", "queue.pause", "paused"),
            ("local", "job.delete", "deleted"),
            ("local", "job.cancel", "cancelled"),
            (
                "local",
                "job.delete",
                &*format!("not deleted: job {} is running: cancel it first", s.running)
            ),
            ("local", "job.retry", "retried"),
        ]
    );
}

async fn bulk_actions_preview_then_act_on_the_filter(store: Arc<dyn Store>) {
    let s = seed(&*store).await;
    let app = errand_web::router(store.clone(), Config::new().bulk_limit(2));
    let t = token(&get(&app, "/jobs").await.body);
    let preview = post(
        &app,
        "/jobs/bulk",
        &format!("csrf={t}&action=cancel&scope=filter&queue=mail"),
        &[],
    )
    .await;
    assert_eq!(preview.status, StatusCode::OK);
    assert!(
        preview.body.contains(r#"id="preview-count">3</strong>"#),
        "{}",
        preview.body
    );
    assert!(preview.body.contains("at most 2 in one run"));
    assert_eq!(
        store
            .count(&ListFilter::new().queue("mail").state(JobState::Cancelled))
            .await
            .unwrap(),
        0,
        "a preview changes nothing"
    );
    let done = post(
        &app,
        "/jobs/bulk",
        &format!("csrf={t}&action=cancel&scope=filter&queue=mail&confirm=yes"),
        &[],
    )
    .await;
    assert!(
        done.body
            .contains("2 cancelled, 0 skipped, 0 failed; more jobs match"),
        "{}",
        done.body
    );
    let again = post(
        &app,
        "/jobs/bulk",
        &format!("csrf={t}&action=cancel&scope=filter&queue=mail&confirm=yes"),
        &[],
    )
    .await;
    assert!(
        again.body.contains("1 cancelled, 0 skipped, 0 failed</p>"),
        "{}",
        again.body
    );
    assert_eq!(
        store
            .count(&ListFilter::new().queue("mail").state(JobState::Cancelled))
            .await
            .unwrap(),
        3
    );
    // A selection.
    let sel = format!(
        "csrf={t}&action=retry&scope=selected&ids={}&ids={}&confirm=yes",
        s.available[0], s.cancelled
    );
    let r = post(&app, "/jobs/bulk", &sel, &[]).await;
    assert!(r.body.contains("2 retried"), "{}", r.body);
    assert_eq!(state(&*store, s.cancelled).await, JobState::Available);
    let log = store.audit_log(0, None).await.unwrap();
    assert_eq!(log[0].action, "jobs.retry");
    assert_eq!(log[0].target, "2 selected jobs");
    assert_eq!(log[2].target, "filter queue=mail");
    assert!(log[2].detail.starts_with("2 cancelled"));
}

#[tokio::test]
async fn credentials_roles_and_read_only() {
    let store: Arc<dyn Store> = Arc::new(errand::MemoryStore::new());
    let s = seed(&*store).await;
    let config = Config::new()
        .user("ops", "s3cret", Role::Operator)
        .user("viewer", "look", Role::ReadOnly)
        .token("tok-123", Role::Operator);
    let app = errand_web::router(store.clone(), config);
    let basic = |u: &str, p: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let with = |auth: String| {
        Request::get("/")
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap()
    };
    let none = get(&app, "/").await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(!none.body.contains("<table"), "nothing shown");
    assert_eq!(
        send(&app, with(basic("ops", "wrong"))).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, with(basic("nobody", "s3cret"))).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, with("Bearer tok-1234".into())).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, with(basic("ops", "s3cret"))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, with("Bearer tok-123".into())).await.status,
        StatusCode::OK
    );
    // The viewer sees pages without buttons and cannot act even with a valid token.
    let job = |auth: String| {
        Request::get(format!("/jobs/{}", s.discarded))
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap()
    };
    let ops_page = send(&app, job(basic("ops", "s3cret"))).await;
    assert!(ops_page.body.contains("Retry"));
    let viewer_page = send(&app, job(basic("viewer", "look"))).await;
    assert_eq!(viewer_page.status, StatusCode::OK);
    assert!(
        !viewer_page.body.contains(r#"name="csrf""#),
        "no action forms for a viewer"
    );
    let t = token(&ops_page.body);
    let act = |auth: String| {
        Request::post(format!("/jobs/{}/retry", s.discarded))
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={t}")))
            .unwrap()
    };
    assert_eq!(
        send(&app, act(basic("viewer", "look"))).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(state(&*store, s.discarded).await, JobState::Discarded);
    assert_eq!(
        send(&app, act(basic("ops", "s3cret"))).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        store.audit_log(1, None).await.unwrap()[0].actor,
        "ops",
        "who acted is recorded"
    );

    // Read-only for everyone.
    let ro = errand_web::router(store.clone(), Config::new().read_only(true));
    let page = get(&ro, &format!("/jobs/{}", s.cancelled)).await;
    assert!(!page.body.contains(r#"name="csrf""#));
    let r = post(&ro, &format!("/jobs/{}/retry", s.cancelled), "csrf=x", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("read-only"));
}

#[tokio::test]
async fn nested_under_a_path_behind_the_applications_own_auth() {
    let store: Arc<dyn Store> = Arc::new(errand::MemoryStore::new());
    let s = seed(&*store).await;
    let dashboard = errand_web::router(store.clone(), Config::new().upstream_auth());
    // The application's layer: a header stands for its session.
    let app = Router::new()
        .nest("/admin/jobs", dashboard)
        .layer(axum::middleware::from_fn(
            |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
                if req
                    .headers()
                    .get("x-app-session")
                    .is_some_and(|v| v == "alice")
                {
                    req.extensions_mut()
                        .insert(Actor::new("alice", Role::Operator));
                }
                next.run(req).await
            },
        ));
    assert_eq!(
        get(&app, "/admin/jobs").await.status,
        StatusCode::UNAUTHORIZED
    );
    let page = send(
        &app,
        Request::get("/admin/jobs")
            .header("x-app-session", "alice")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(r#"href="/admin/jobs/assets/style.css""#),
        "assets under the mount point"
    );
    assert!(
        page.body.contains(r#"href="/admin/jobs/jobs""#),
        "links under the mount point"
    );
    let job = send(
        &app,
        Request::get(format!("/admin/jobs/jobs/{}", s.discarded))
            .header("x-app-session", "alice")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let t = token(&job.body);
    assert!(job.body.contains(&format!(
        r#"action="/admin/jobs/jobs/{}/retry""#,
        s.discarded
    )));
    let r = send(
        &app,
        Request::post(format!("/admin/jobs/jobs/{}/retry", s.discarded))
            .header("x-app-session", "alice")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={t}")))
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.location,
        Some(format!("/admin/jobs/jobs/{}", s.discarded))
    );
    assert_eq!(store.audit_log(1, None).await.unwrap()[0].actor, "alice");
}

/// A table locked by another session: the page still answers, within the query timeout,
/// saying what it could not read, instead of hanging.
#[tokio::test]
async fn postgres_a_slow_database_degrades_the_page_instead_of_hanging_it() {
    let pg = errand_postgres::testing::scratch_store().await;
    seed(&pg).await;
    let mut locker = pg.pool().begin().await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{}\".jobs IN ACCESS EXCLUSIVE MODE",
        pg.schema()
    ))
    .execute(&mut *locker)
    .await
    .unwrap();
    let app = errand_web::router(
        pg.clone(),
        Config::new().query_timeout(Duration::from_millis(300)),
    );
    let page = tokio::time::timeout(Duration::from_secs(20), get(&app, "/"))
        .await
        .expect("the page answers");
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("Counts of available jobs: took longer than 300 ms"),
        "{}",
        page.body
    );
    let jobs = tokio::time::timeout(Duration::from_secs(20), get(&app, "/jobs"))
        .await
        .expect("answers");
    assert!(
        jobs.body.contains("Jobs: took longer than 300 ms"),
        "{}",
        jobs.body
    );
    let m = tokio::time::timeout(Duration::from_secs(20), get(&app, "/metrics"))
        .await
        .expect("answers");
    assert!(
        m.body
            .contains(r#"errand_metrics_source_up{source="counts"} 0"#),
        "{}",
        m.body
    );
    assert!(
        !m.body.contains("errand_queue_jobs{"),
        "no stale or partial counts"
    );
    locker.rollback().await.unwrap();
    let page = get(&app, "/").await;
    assert!(
        !page.body.contains("took longer"),
        "back once the lock is gone"
    );
}

async fn the_workers_page_shows_the_registry(store: Arc<dyn Store>) {
    use errand::{WorkerQueue, WorkerRecord};
    let now = store.now(chrono::Utc::now()).await;
    let q = vec![WorkerQueue {
        name: "mail".into(),
        concurrency: 4,
    }];
    let alive = WorkerRecord::new(
        "w-alive",
        "host-1",
        11,
        "0.1.0",
        q.clone(),
        now,
        now,
        3,
        10_000,
    );
    let old = now - chrono::TimeDelta::seconds(120);
    let silent = WorkerRecord::new(XSS, "host-2", 22, "0.1.0", q, old, old, 1, 10_000);
    store.register_worker(&alive).await.unwrap();
    store.register_worker(&silent).await.unwrap();
    assert!(store
        .lead(
            errand::MAINTENANCE_LEADER,
            "w-alive",
            now,
            Duration::from_secs(60)
        )
        .await
        .unwrap());
    let app = errand_web::router(store.clone(), Config::new());
    let page = get(&app, "/workers").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("1 alive, 1 silent"), "{}", page.body);
    let row = &page.body[page.body.find(r#"data-worker="w-alive""#).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("mail × 4") && row.contains("leader") && row.contains(">alive"),
        "{row}"
    );
    assert!(
        !page.body.contains("<script>alert"),
        "a hostile worker id is text"
    );
    let overview = get(&app, "/").await;
    assert!(
        overview.body.contains("1 alive</a>, holding 3 jobs."),
        "{}",
        overview.body
    );
}

async fn metrics_describe_the_whole_store(store: Arc<dyn Store>) {
    seed(&*store).await;
    let app = errand_web::router(store.clone(), Config::new());
    let m = get(&app, "/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    let has = |line: &str| assert!(m.body.lines().any(|l| l == line), "{line} in:\n{}", m.body);
    has(r#"errand_queue_jobs{queue="reports",state="discarded"} 1"#);
    has(r#"errand_queue_jobs{queue="mail",state="available"} 3"#);
    has(r#"errand_queue_jobs{queue="mail",state="completed"} 0"#);
    has(r#"errand_queue_lag_seconds{queue="reports"} 0"#);
    has(r#"errand_metrics_source_up{source="counts"} 1"#);
    has(r#"errand_leader_present 0"#);
    has(r#"errand_workers{status="alive"} 0"#);
    has("errand_workers_jobs_held 0");
    assert!(m
        .body
        .contains("# HELP errand_queue_lag_seconds Age of the oldest available job"));
    assert!(m.body.contains("# TYPE errand_queue_jobs gauge"));
    let lag = m
        .body
        .lines()
        .find_map(|l| l.strip_prefix(r#"errand_queue_lag_seconds{queue="mail"} "#))
        .expect("mail's lag");
    assert!(lag.parse::<f64>().unwrap() >= 0.0);
}

/// With a count limit below what the store holds, counts say "≥" / "more than" instead of
/// reading further, and the metrics mark them as lower bounds.
#[tokio::test]
async fn counts_stop_at_the_limit_and_say_so() {
    let (store, _dir) = common::sqlite().await;
    seed(&*store).await;
    let app = errand_web::router(
        store.clone(),
        Config::new().count_limit(2).match_count_limit(2),
    );
    let o = get(&app, "/").await;
    let mail = &o.body[o.body.find(r#"data-queue="mail""#).unwrap()..];
    assert!(
        mail[..mail.find("</tr>").unwrap()].contains("state=available\">≥ 3</a>"),
        "{}",
        o.body
    );
    assert!(o
        .body
        .contains("Counted up to 2 jobs per state: available passed it"));
    let reports = &o.body[o.body.find(r#"data-queue="reports""#).unwrap()..];
    assert!(
        reports[..reports.find("</tr>").unwrap()].contains("state=discarded\">1</a>"),
        "exact under the limit"
    );
    let jobs = get(&app, "/jobs").await;
    assert!(
        jobs.body.contains("More than 2 jobs match every job."),
        "{}",
        jobs.body
    );
    let one = get(&app, "/jobs?queue=reports&state=discarded").await;
    assert!(one.body.contains("1 jobs match"), "{}", one.body);
    let m = get(&app, "/metrics").await;
    assert!(
        m.body
            .contains(r#"errand_queue_jobs_exact{state="available"} 0"#),
        "{}",
        m.body
    );
    assert!(m
        .body
        .contains(r#"errand_queue_jobs_exact{state="discarded"} 1"#));
}

/// Every `errand_queue_jobs` gauge equals the store's own count for its queue and state.
async fn metric_gauges_equal_the_stores_counts(store: Arc<dyn Store>) {
    seed(&*store).await;
    let app = errand_web::router(store.clone(), Config::new());
    let m = get(&app, "/metrics").await;
    let stats = store.stats(&[]).await.unwrap();
    assert!(!stats.is_empty());
    let mut gauges = 0;
    for line in m
        .body
        .lines()
        .filter(|l| l.starts_with("errand_queue_jobs{"))
    {
        gauges += 1;
        let (labels, value) = line.rsplit_once(' ').unwrap();
        let queue = labels
            .split("queue=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let state = labels
            .split("state=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let want = stats
            .iter()
            .find(|c| c.queue == queue && c.state.as_str() == state)
            .map_or(0, |c| c.count);
        assert_eq!(value.parse::<f64>().unwrap(), want as f64, "{line}");
    }
    let queues: std::collections::BTreeSet<_> = stats.iter().map(|c| &c.queue).collect();
    assert_eq!(
        gauges,
        queues.len() * JobState::ALL.len(),
        "every state of every queue"
    );
}

/// Behind a proxy that strips its path: links and forms are written under `base_path`.
#[tokio::test]
async fn behind_a_proxy_links_carry_the_base_path() {
    let store: Arc<dyn Store> = Arc::new(errand::MemoryStore::new());
    let s = seed(&*store).await;
    let app = errand_web::router(store, Config::new().base_path("ops/jobs/"));
    let page = get(&app, &format!("/jobs/{}", s.discarded)).await;
    assert!(
        page.body.contains(r#"href="/ops/jobs/assets/style.css""#),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains(&format!(r#"action="/ops/jobs/jobs/{}/retry""#, s.discarded)));
    let t = token(&page.body);
    let r = post(
        &app,
        &format!("/jobs/{}/retry", s.discarded),
        &format!("csrf={t}"),
        &[],
    )
    .await;
    assert_eq!(r.location, Some(format!("/ops/jobs/jobs/{}", s.discarded)));
}

async fn the_cron_page_shows_entries_next_ticks_and_runs(store: Arc<dyn Store>) {
    use errand::store::FinishAction;
    let now = store.now(chrono::Utc::now()).await;
    let tick = |name: &str, at: chrono::DateTime<chrono::Utc>| {
        let mut j = common::job("Nightly", "maintenance", "{}", at);
        j.tags = vec!["cron".into(), format!("cron:{name}")];
        j
    };
    // Two past ticks of `nightly` that ran, and its next one; `hourly` is late.
    for back in [2, 1] {
        let at = now - chrono::TimeDelta::days(back);
        store.insert(vec![tick("nightly", at)], at).await.unwrap();
        for r in common::claim(&*store, "maintenance", 1, at).await {
            common::end(&*store, &r, at, FinishAction::Complete).await;
        }
    }
    let next = now + chrono::TimeDelta::hours(3);
    store
        .insert(vec![tick("nightly", next)], now)
        .await
        .unwrap();
    let late = now - chrono::TimeDelta::minutes(5);
    store
        .insert(vec![tick("hourly", late)], late)
        .await
        .unwrap();
    let app = errand_web::router(store.clone(), Config::new());
    let page = get(&app, "/cron").await;
    assert_eq!(page.status, StatusCode::OK);
    let nightly = &page.body[page.body.find(r#"data-entry="nightly""#).expect("nightly")..];
    let nightly = &nightly[..nightly.find("</section>").unwrap()];
    assert!(
        nightly.contains("in 3 h") && nightly.contains("scheduled"),
        "{nightly}"
    );
    assert_eq!(
        nightly.matches(">completed<").count(),
        2,
        "two runs: {nightly}"
    );
    let hourly = &page.body[page.body.find(r#"data-entry="hourly""#).expect("hourly")..];
    assert!(hourly.contains("late: no worker is running it"), "{hourly}");
}

/// The jobs page pages newest first by `before` and oldest first by `after`.
#[tokio::test]
async fn jobs_page_both_ways() {
    let store: Arc<dyn Store> = Arc::new(errand::MemoryStore::new());
    let now = store.now(chrono::Utc::now()).await;
    let jobs: Vec<_> = (0..120)
        .map(|i| common::job("Bulk", "bulk", &format!(r#"{{"i":{i}}}"#), now))
        .collect();
    let ids: Vec<i64> = store
        .insert(jobs, now)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    let app = errand_web::router(store.clone(), Config::new());
    let first_row = |body: &str| -> i64 {
        let at = body.find("data-id=\"").unwrap() + 9;
        body[at..].split('"').next().unwrap().parse().unwrap()
    };
    let next = |body: &str| -> String {
        let at = body.find(r#"id="next" href=""#).expect("a next link") + 16;
        body[at..].split('"').next().unwrap().replace("&amp;", "&")
    };
    let newest = get(&app, "/jobs?queue=bulk").await;
    assert_eq!(first_row(&newest.body), ids[119]);
    let page2 = get(&app, &next(&newest.body)).await;
    assert_eq!(first_row(&page2.body), ids[69]);
    let oldest = get(&app, "/jobs?queue=bulk&order=oldest").await;
    assert_eq!(first_row(&oldest.body), ids[0]);
    let link = next(&oldest.body);
    assert!(
        link.contains("order=oldest") && link.contains(&format!("after={}", ids[49])),
        "{link}"
    );
    let page2 = get(&app, &link).await;
    assert_eq!(first_row(&page2.body), ids[50]);
    let page3 = get(&app, &next(&page2.body)).await;
    assert_eq!(first_row(&page3.body), ids[100]);
    assert!(
        !page3.body.contains(r#"id="next""#),
        "20 left: no next page"
    );
}

/// The drain view: a queue's backlog over its recent finish rate.
#[tokio::test]
async fn the_queues_page_says_how_long_a_backlog_takes() {
    use errand::store::FinishAction;
    let store: Arc<dyn Store> = Arc::new(errand::MemoryStore::new());
    let now = store.now(chrono::Utc::now()).await;
    // 50 jobs finished in each of the last minutes before this one, 600 waiting.
    for ago in 2..=6 {
        let at = errand::store::minute_of(now) - chrono::TimeDelta::minutes(ago)
            + chrono::TimeDelta::seconds(5);
        let jobs: Vec<_> = (0..50)
            .map(|_| common::job("Work", "work", "{}", at))
            .collect();
        store.insert(jobs, at).await.unwrap();
        for r in common::claim(&*store, "work", 50, at).await {
            common::end(&*store, &r, at, FinishAction::Complete).await;
        }
    }
    store
        .tally_finished(now, Duration::from_secs(3600))
        .await
        .unwrap();
    let backlog: Vec<_> = (0..600)
        .map(|_| common::job("Work", "work", "{}", now))
        .collect();
    store.insert(backlog, now).await.unwrap();
    let app = errand_web::router(store, Config::new());
    let page = get(&app, "/queues").await;
    let row = &page.body[page.body.find(r#"data-queue="work""#).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(r#"class="num available">600<"#), "{row}");
    assert!(row.contains(r#"class="num rate">50.0<"#), "{row}");
    assert!(row.contains(r#"class="drain">~12 min<"#), "{row}");
}

/// A workflow whose first step was cancelled (its plain dependents cancelled with it, the
/// tolerant one released): the list shows it running; its page draws every step coloured by
/// state and lists what each waits for, hostile step names as text; cancelling it from the
/// page ends the rest and is audited.
async fn the_workflow_pages_draw_steps_by_state_and_cancel(store: Arc<dyn Store>) {
    use errand::store::{NewJob, NewStep, NewWorkflow, StepDep};
    let now = store.now(chrono::Utc::now()).await;
    let job = |kind: &str| NewJob {
        kind: kind.into(),
        queue: "wf".into(),
        args: "{}".into(),
        priority: 0,
        max_attempts: 1,
        run_at: now,
        tags: vec![],
        unique_key: None,
        unique_states: Default::default(),
        unique_for_ms: None,
        backoff: None,
        timeout_ms: None,
        partition_key: None,
    };
    let step = |name: &str, deps: &[(&str, bool)]| NewStep {
        step: name.into(),
        job: job("k"),
        deps: deps
            .iter()
            .map(|(d, ignore)| StepDep {
                step: (*d).into(),
                ignore_failure: *ignore,
            })
            .collect(),
    };
    let wf = NewWorkflow {
        id: "web-wf".into(),
        name: "nightly".into(),
        steps: vec![
            step("a", &[]),
            step("b", &[("a", false)]),
            step("tolerant", &[("a", true)]),
            step(XSS, &[("b", false)]),
        ],
        holds: vec![],
    };
    let ids = store.insert_workflow(&wf, now).await.unwrap();
    store.cancel(ids[0], now).await.unwrap();
    let app = errand_web::router(store.clone(), Config::new());
    let list = get(&app, "/workflows").await;
    assert_eq!(list.status, StatusCode::OK);
    let row = &list.body[list.body.find(r#"data-workflow="web-wf""#).expect("listed")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("nightly") && row.contains("running"), "{row}");
    let page = get(&app, "/workflows/web-wf").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"id="workflow-graph""#), "a graph");
    assert_eq!(page.body.matches(r#"class="node cancelled""#).count(), 3);
    assert_eq!(page.body.matches(r#"class="node available""#).count(), 1);
    assert_eq!(page.body.matches(r#"class="edge""#).count(), 2);
    assert_eq!(page.body.matches(r#"class="edge tolerant""#).count(), 1);
    assert!(page
        .body
        .contains(&format!("cancelled by job <a href=\"/jobs/{}\"", ids[0])));
    assert!(
        !page.body.contains("<script>alert"),
        "a hostile step name is text"
    );
    let t = token(&page.body);
    let r = post(&app, "/workflows/web-wf/cancel", &format!("csrf={t}"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(state(&*store, ids[2]).await, JobState::Cancelled);
    let after = get(&app, "/workflows/web-wf").await;
    assert!(after.body.contains("· finished"), "{}", after.body);
    let audit = store.audit_log(10, None).await.unwrap();
    assert!(
        audit.iter().any(|e| e.action == "workflow.cancel"
            && e.target == "workflow web-wf"
            && e.detail.contains("cancelled 1")),
        "{audit:?}"
    );
    assert_eq!(
        get(&app, "/workflows/nope").await.status,
        StatusCode::NOT_FOUND
    );
}
