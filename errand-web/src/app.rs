//! The router's shared state, the guard every request passes (where the router is mounted,
//! who is asking, security headers) and the checks every action passes (role, cross-site
//! request, form token).

use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use errand::{store::Store, Client, NewAudit};
use maud::html;

use crate::config::{Actor, Config, Role};

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) client: Client<Arc<dyn Store>>,
    pub(crate) config: Arc<Config>,
    /// The form token: random per router, embedded in every action form. A page of
    /// another origin cannot read it, so it cannot forge an action.
    pub(crate) csrf: Arc<str>,
}

impl App {
    pub(crate) fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let token: [u8; 24] = rand::random();
        let csrf: String = token.iter().map(|b| format!("{b:02x}")).collect();
        App {
            client: Client::new(store),
            config: Arc::new(config),
            csrf: csrf.into(),
        }
    }

    pub(crate) fn store(&self) -> &dyn Store {
        &**self.client.store()
    }

    /// The store's time (the database's on Postgres).
    pub(crate) async fn now(&self) -> DateTime<Utc> {
        self.store().now(Utc::now()).await
    }

    /// Records an action; a failure to record is logged and shown, never hidden.
    pub(crate) async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Option<String> {
        let now = self.now().await;
        match self
            .store()
            .record_audit(&NewAudit::new(&actor.name, action, target, detail), now)
            .await
        {
            Ok(_) => None,
            Err(e) => {
                tracing::error!(error = %e, action, target, "could not record an audit entry");
                Some(format!(
                    "the action was taken but could not be recorded in the audit log: {e}"
                ))
            }
        }
    }
}

/// Where the router is mounted (`""` at the root, `/admin/jobs` when nested there).
#[derive(Clone)]
pub(crate) struct Base(pub(crate) String);

/// Per-request context every page renders with.
pub(crate) struct Page {
    pub(crate) base: String,
    pub(crate) actor: Actor,
    pub(crate) config: Arc<Config>,
    pub(crate) csrf: Arc<str>,
    /// Only the live part, for the refresh script.
    pub(crate) fragment: bool,
    /// The navigation entry to mark.
    pub(crate) section: &'static str,
}

impl Page {
    pub(crate) fn read_only(&self) -> bool {
        self.actor.role < Role::Operator
    }
}

/// The header the refresh script sends to get a page's live part only.
pub(crate) const FRAGMENT_HEADER: &str = "x-errand-fragment";

impl FromRequestParts<App> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let actor = parts
            .extensions
            .get::<Actor>()
            .cloned()
            .ok_or_else(|| failure(StatusCode::UNAUTHORIZED, "not authenticated"))?;
        let base = parts
            .extensions
            .get::<Base>()
            .map(|b| b.0.clone())
            .unwrap_or_default();
        let path = parts.uri.path();
        let section = [
            "/jobs",
            "/queues",
            "/workers",
            "/workflows",
            "/cron",
            "/audit",
        ]
        .into_iter()
        .find(|s| path.starts_with(s))
        .unwrap_or("/");
        Ok(Page {
            base,
            actor,
            config: app.config.clone(),
            csrf: app.csrf.clone(),
            fragment: parts.headers.contains_key(FRAGMENT_HEADER),
            section,
        })
    }
}

/// Every request: finds the mount point, authenticates, sets the security headers.
pub(crate) async fn guard(
    State(app): State<App>,
    OriginalUri(original): OriginalUri,
    mut req: Request,
    next: Next,
) -> Response {
    let inner = req.uri().path();
    let full = original.path();
    // Nested at `/admin/jobs`, a request for `/admin/jobs/jobs` reaches us as `/jobs`, and
    // one for `/admin/jobs` as `/`.
    let base = if inner == "/" {
        full.trim_end_matches('/')
    } else {
        full.strip_suffix(inner).unwrap_or("").trim_end_matches('/')
    }
    .to_string();
    let actor = match authenticate(&app.config, &req) {
        Some(mut actor) => {
            if app.config.read_only {
                actor.role = Role::ReadOnly;
            }
            actor
        }
        None => return unauthorized(&app.config),
    };
    req.extensions_mut().insert(actor);
    req.extensions_mut()
        .insert(Base(format!("{}{base}", app.config.base_path)));
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // Nothing inline, nothing from elsewhere: a payload that slipped past escaping still
    // could not run.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn authenticate(config: &Config, req: &Request) -> Option<Actor> {
    let auth = &config.auth;
    if !auth.is_required() {
        return Some(Actor::new("local", Role::Operator));
    }
    if auth.upstream {
        if let Some(actor) = req.extensions().get::<Actor>() {
            return Some(actor.clone());
        }
    }
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        // Every entry is compared, so the time taken does not say which user exists.
        let mut found = None;
        for (u, p, role) in &auth.users {
            if same(u.as_bytes(), user.as_bytes()) & same(p.as_bytes(), password.as_bytes()) {
                found = Some(Actor::new(u.clone(), *role));
            }
        }
        found
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let mut found = None;
        for (t, role) in &auth.tokens {
            if same(t.as_bytes(), rest.trim().as_bytes()) {
                found = Some(Actor::new("token", *role));
            }
        }
        found
    } else {
        None
    }
}

fn unauthorized(config: &Config) -> Response {
    let mut res = failure(
        StatusCode::UNAUTHORIZED,
        "authentication required: sign in with the dashboard's user or token",
    );
    if !config.auth.users.is_empty() {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"errand\", charset=\"UTF-8\""),
        );
    } else {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}

/// Byte strings equal, in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An action's request, checked: a handler that takes one knows its actor may act, that it
/// came from the dashboard's own pages and that it carries the form token (see
/// [`refuse_action`]); it gets the page context and the form's fields.
pub(crate) struct Action {
    pub(crate) page: Page,
    pub(crate) fields: crate::form::Fields,
}

impl axum::extract::FromRequest<App> for Action {
    type Rejection = Response;

    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let page = Page::from_request_parts(&mut parts, app).await?;
        let headers = parts.headers.clone();
        let req = Request::from_parts(parts, body);
        let bytes = axum::body::Bytes::from_request(req, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let fields = crate::form::Fields::parse(&bytes);
        if let Some(refused) = refuse_action(&page, &headers, fields.get("csrf")) {
            return Err(refused);
        }
        Ok(Action { page, fields })
    }
}

/// The checks an action passes before it touches the store: the actor may act, the
/// request comes from the dashboard's own pages (the browser's `Sec-Fetch-Site` and
/// `Origin` say so when present) and carries the form token. `Some`: the refusal to send.
fn refuse_action(page: &Page, headers: &HeaderMap, token: Option<&str>) -> Option<Response> {
    check_action(page, headers, token)
        .err()
        .map(|(status, why)| failure(status, why))
}

fn check_action(
    page: &Page,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<(), (StatusCode, &'static str)> {
    if page.read_only() {
        return Err((
            StatusCode::FORBIDDEN,
            "this dashboard is read-only for you: actions need an operator",
        ));
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str().unwrap_or(""), "same-origin" | "none") {
            return Err((
                StatusCode::FORBIDDEN,
                "cross-site request refused: actions are taken from the dashboard's own pages",
            ));
        }
    }
    if let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin_host != host.to_str().unwrap_or("") {
            return Err((
                StatusCode::FORBIDDEN,
                "cross-origin request refused: actions are taken from the dashboard's own pages",
            ));
        }
    }
    match token {
        Some(t) if same(t.as_bytes(), page.csrf.as_bytes()) => Ok(()),
        _ => Err((
            StatusCode::FORBIDDEN,
            "missing or stale form token: reload the page and try again",
        )),
    }
}

/// A page saying what went wrong (escaped like everything else).
pub(crate) fn failure(status: StatusCode, message: &str) -> Response {
    let body = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (status.as_u16()) " · errand" } }
            body { h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) } p.error { (message) } }
        }
    };
    (status, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn same_compares_bytes() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(same(b"", b""));
    }
}
