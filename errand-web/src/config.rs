//! What the dashboard lets through and who may act: credentials, roles, read-only mode.

use std::time::Duration;

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Sees every page; takes no action.
    ReadOnly,
    /// Sees every page and retries, cancels and deletes jobs, pauses and resumes queues.
    Operator,
}

/// Who is making a request, as authentication found them. An application that nests the
/// router behind its own authentication inserts one into the request's extensions (see
/// [`Config::upstream_auth`]); the audit log records its `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Recorded in the audit log as who acted.
    pub name: String,
    /// What the actor may do ([`Config::read_only`] lowers every actor to read-only).
    pub role: Role,
}

impl Actor {
    /// An actor named `name` with `role`.
    pub fn new(name: impl Into<String>, role: Role) -> Self {
        Actor {
            name: name.into(),
            role,
        }
    }
}

/// How requests are authenticated: any of the basic-authentication users and bearer tokens
/// configured, or the application's own layer ([`Config::upstream_auth`]). With none
/// configured every request is an operator named `local`: only for a dashboard bound to a
/// loopback address, and [`crate::serve()`] refuses any other address then.
#[derive(Clone, Default)]
pub(crate) struct Auth {
    pub(crate) users: Vec<(String, String, Role)>,
    pub(crate) tokens: Vec<(String, Role)>,
    pub(crate) upstream: bool,
}

impl std::fmt::Debug for Auth {
    // Never prints a password or a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.users.iter().map(|(u, _, _)| u.as_str()).collect();
        f.debug_struct("Auth")
            .field("users", &names)
            .field("tokens", &self.tokens.len())
            .field("upstream", &self.upstream)
            .finish()
    }
}

impl Auth {
    pub(crate) fn is_required(&self) -> bool {
        self.upstream || !self.users.is_empty() || !self.tokens.is_empty()
    }
}

/// The environment variables [`Config::from_env`] reads.
pub const ENV_USER: &str = "ERRAND_DASHBOARD_USER";
/// Password for [`ENV_USER`].
pub const ENV_PASSWORD: &str = "ERRAND_DASHBOARD_PASSWORD";
/// A bearer token (operator).
pub const ENV_TOKEN: &str = "ERRAND_DASHBOARD_TOKEN";
/// `1` or `true`: read-only for everyone.
pub const ENV_READ_ONLY: &str = "ERRAND_DASHBOARD_READ_ONLY";

/// The dashboard's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) auth: Auth,
    pub(crate) read_only: bool,
    pub(crate) title: String,
    pub(crate) query_timeout: Duration,
    pub(crate) refresh: Duration,
    pub(crate) bulk_limit: u32,
    pub(crate) count_limit: u64,
    pub(crate) match_count_limit: u64,
    pub(crate) base_path: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            auth: Auth::default(),
            read_only: false,
            title: "errand".into(),
            query_timeout: Duration::from_secs(2),
            refresh: Duration::from_secs(2),
            bulk_limit: 10_000,
            count_limit: 100_000,
            match_count_limit: 10_000,
            base_path: String::new(),
        }
    }
}

/// A setting in the environment that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A user without a password or the reverse.
    #[error("set both {ENV_USER} and {ENV_PASSWORD} for basic authentication, or neither")]
    HalfBasic,
    /// An empty token or password.
    #[error("{0} is set but empty: give it a value or unset it")]
    Empty(&'static str),
}

impl Config {
    /// No authentication (loopback only), operators may act.
    pub fn new() -> Self {
        Self::default()
    }

    /// Settings from the environment: [`ENV_USER`] and [`ENV_PASSWORD`] (basic
    /// authentication, operator), or [`ENV_TOKEN`] (bearer, operator), and
    /// [`ENV_READ_ONLY`]. Neither credential set: no authentication.
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |k: &'static str| std::env::var(k).ok();
        let mut config = Config::new();
        let non_empty = |k: &'static str, v: String| {
            if v.is_empty() {
                Err(ConfigError::Empty(k))
            } else {
                Ok(v)
            }
        };
        match (var(ENV_USER), var(ENV_PASSWORD)) {
            (Some(u), Some(p)) => {
                config = config.user(
                    non_empty(ENV_USER, u)?,
                    non_empty(ENV_PASSWORD, p)?,
                    Role::Operator,
                )
            }
            (None, None) => {}
            _ => return Err(ConfigError::HalfBasic),
        }
        if let Some(t) = var(ENV_TOKEN) {
            config = config.token(non_empty(ENV_TOKEN, t)?, Role::Operator);
        }
        if let Some(r) = var(ENV_READ_ONLY) {
            config.read_only = matches!(r.as_str(), "1" | "true" | "yes");
        }
        Ok(config)
    }

    /// Adds a basic-authentication user. Users and tokens combine: a request may use either.
    pub fn user(
        mut self,
        name: impl Into<String>,
        password: impl Into<String>,
        role: Role,
    ) -> Self {
        self.auth.users.push((name.into(), password.into(), role));
        self
    }

    /// Adds a bearer token (`Authorization: Bearer <token>`).
    pub fn token(mut self, token: impl Into<String>, role: Role) -> Self {
        self.auth.tokens.push((token.into(), role));
        self
    }

    /// Trusts the application's own layer: it authenticates and inserts an [`Actor`] into
    /// the extensions of every request it lets through; a request without one is refused
    /// (401). Users and tokens configured here are still accepted.
    pub fn upstream_auth(mut self) -> Self {
        self.auth.upstream = true;
        self
    }

    /// Read-only for everyone: pages show no action buttons and every action is refused.
    pub fn read_only(mut self, yes: bool) -> Self {
        self.read_only = yes;
        self
    }

    /// The name in the page titles (default `errand`).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// How long one page's store queries may take before the page shows what it has and
    /// says the rest was too slow (default 2 s).
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// [`Config::query_timeout`] in milliseconds (for a database-side statement timeout).
    pub fn query_timeout_ms(&self) -> u64 {
        u64::try_from(self.query_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// How often live pages refresh themselves (default 2 s; pausable in the page).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// The most jobs one bulk action touches (default 10,000); more matching jobs are left
    /// for another run, and the result says so.
    pub fn bulk_limit(mut self, n: u32) -> Self {
        self.bulk_limit = n.max(1);
        self
    }

    /// How far the counts by queue and state go (overview, queues, `/metrics`; default
    /// 100,000): each state's jobs are counted up to this many, and a state that passes it
    /// shows its numbers as `≥ n`. Counting never scans a table of millions; a higher limit
    /// gives exact numbers further at the cost of reading that many rows per state.
    pub fn count_limit(mut self, n: u64) -> Self {
        self.count_limit = n.max(1);
        self
    }

    /// How far the jobs page counts the jobs its filter matches, and a bulk action's
    /// preview (default 10,000): beyond it they say "more than". A filter on queue, kind or
    /// tag has no index of its own, so this is how many rows such a count may read.
    pub fn match_count_limit(mut self, n: u64) -> Self {
        self.match_count_limit = n.max(1);
        self
    }

    /// The path a reverse proxy serves the dashboard under when it strips it before passing
    /// requests on (`/ops/jobs` for `location /ops/jobs/ { proxy_pass http://127.0.0.1:9090/; }`):
    /// links and forms are written under it. Not needed when the router is nested in an
    /// application (the mount point is found from the request) or when the proxy passes
    /// the path unchanged.
    pub fn base_path(mut self, path: impl Into<String>) -> Self {
        let p: String = path.into();
        self.base_path = format!("/{}", p.trim_matches('/'))
            .trim_end_matches('/')
            .to_string();
        self
    }

    /// Whether requests must authenticate (some user, token or upstream layer is set).
    pub fn requires_auth(&self) -> bool {
        self.auth.is_required()
    }
}
