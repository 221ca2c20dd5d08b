//! The errand dashboard: every queue's jobs by state and lag, jobs filtered and paged, one
//! job's arguments, errors and timeline, retry / cancel / delete one job or every job a
//! filter matches, pause and resume queues, the worker processes live, and the audit log
//! of every action taken.
//!
//! It is an [`axum::Router`] that an application nests under any path, or that
//! `errand dashboard` serves on its own for any database URL errand opens:
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let store = errand::connect("sqlite://jobs.db").await?;
//! let app = axum::Router::new()
//!     // .route("/", …) the application's own routes
//!     .nest("/admin/jobs", errand_web::router(store, errand_web::Config::from_env()?));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! **Safe by default.** Pages are rendered on the server with maud, which escapes every
//! value: a payload, tag, queue name or error holding `<script>` shows as text. Pages load
//! one stylesheet and one small script from the router itself (no CDN, nothing from the
//! network: it works in a closed one), under a Content-Security-Policy that forbids inline
//! and foreign scripts. Every action is a `POST` that must carry the page's form token and
//! must not come from another site (`Sec-Fetch-Site`, `Origin`), and is recorded in the
//! store's audit log with who took it. Without credentials every request is an operator
//! named `local`, so [`serve()`] refuses to listen on anything but a loopback address then;
//! configure users or tokens ([`Config::user`], [`Config::token`], [`Config::from_env`]),
//! or let the application's own authentication decide ([`Config::upstream_auth`]).
//!
//! **Bounded.** Every store read a page makes runs under [`Config::query_timeout`]; a slow
//! one leaves its part of the page saying so instead of hanging the page.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod app;
mod config;
mod form;
mod layout;
mod pages;
mod serve;

use std::sync::Arc;

use axum::http::header;
use axum::routing::{get, post};
use axum::Router;
use errand::store::Store;

pub use config::{
    Actor, Config, ConfigError, Role, ENV_PASSWORD, ENV_READ_ONLY, ENV_TOKEN, ENV_USER,
};
pub use serve::{check_bind, listen, serve, ServeError};

const STYLE: &str = include_str!("../assets/style.css");
const SCRIPT: &str = include_str!("../assets/live.js");

/// The dashboard for `store` (a `SqliteStore`, `PgStore`, `AnyStore`, `MemoryStore` or
/// any `Arc<dyn Store>`), ready to nest under any path or to serve on its own.
pub fn router<S: Store>(store: S, config: Config) -> Router {
    let app = app::App::new(Arc::new(store), config);
    Router::new()
        .route("/", get(pages::overview::show))
        .route("/jobs", get(pages::jobs::list))
        .route("/jobs/bulk", post(pages::jobs::bulk))
        .route("/jobs/{id}", get(pages::job::show))
        .route("/jobs/{id}/{action}", post(pages::job::act))
        .route("/queues", get(pages::queues::list))
        .route("/queues/{name}/{action}", post(pages::queues::act))
        .route("/workers", get(pages::workers::list))
        .route("/workflows", get(pages::workflows::list))
        .route("/workflows/{id}", get(pages::workflows::show))
        .route("/workflows/{id}/cancel", post(pages::workflows::cancel))
        .route("/cron", get(pages::cron::list))
        .route("/audit", get(pages::audit::list))
        .route("/metrics", get(pages::metrics::show))
        .route(
            "/assets/style.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
        .route(
            "/assets/live.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            app::guard,
        ))
        .with_state(app)
}
