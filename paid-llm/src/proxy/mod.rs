//! The secrets + metering proxy: the only thing a sandbox can reach.
//!
//! An agent in a sandbox is configured with the proxy as its provider's base
//! URL and its run's token as the API key:
//!
//! | provider | base URL given to the agent | e.g. |
//! | --- | --- | --- |
//! | Anthropic | `{proxy}/anthropic` | `ANTHROPIC_BASE_URL` |
//! | OpenAI | `{proxy}/openai/v1` | `OPENAI_BASE_URL` |
//! | Gemini | `{proxy}/gemini` | `GOOGLE_GEMINI_BASE_URL` |
//! | compatible server `name` | `{proxy}/{name}/v1` | |
//!
//! (the first path segment is the upstream's configured name). For each
//! request the proxy:
//!
//! 1. **authenticates** the run token (any of `x-api-key`,
//!    `Authorization: Bearer`, `x-goog-api-key`, `?key=`), which must have
//!    been issued ([`Proxy::issue_token`]), not revoked ([`Proxy::revoke`]),
//!    not expired, and belong to a run not in an end state; otherwise 401 in
//!    the provider's own error format;
//! 2. forwards only **allowlisted** methods and paths (404 otherwise), with
//!    a **capped body** (413);
//! 3. refuses requests **beyond a budget** ([`budget`]) with a 429 in the
//!    provider's quota format and `x-should-retry: false`, so CLIs stop;
//!    the caps are the run's project's ([`Proxy::set_project_budget`]) or
//!    else the proxy's default ([`ProxyConfig::budgets`]);
//! 4. **injects the real key** (`x-api-key`, `Authorization: Bearer`,
//!    `x-goog-api-key`), strips hop-by-hop headers and the sandbox's token,
//!    and for OpenAI streams adds `stream_options.include_usage`;
//! 5. **streams SSE through** chunk by chunk as it arrives ([`sse`]), while
//!    usage is extracted on the side; other responses are read whole;
//! 6. **records** every metered request with
//!    [`Ledger::record_usage`](paid_core::Ledger::record_usage): model,
//!    buckets, cost (`None` when the price is unknown), latency, status.
//!
//! Keys are [`SecretString`]s, sent as sensitive header values, and appear
//! in no log line, error or `Debug` output.
//!
//! Budget breaches are reported to a [`budget::BudgetObserver`] (by default
//! audit events `budget.exceeded` / `budget.alert`) and queryable with
//! [`Proxy::budget_breach`]: the engine moves the run to `budget_exceeded`.

pub mod auth;
pub mod budget;
mod credentials;
mod forward;
mod limits;
mod request;
mod reservation;
pub mod sse;

pub use credentials::ProxyCredentials;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use paid_core::{Clock, ProjectId, ProxyEndpoint, RunId, Store, SystemClock, Timestamp};
use secrecy::SecretString;
use tokio::sync::Notify;

use self::auth::{Grant, RunLimits, RunToken, TokenRegistry};
use self::budget::{AuditObserver, Breach, BudgetConfig, BudgetObserver, Budgets, Spend};
use crate::error::Error;
use crate::metrics::LlmMetrics;
use crate::prices::PriceRegistry;
use crate::providers::ProviderKind;
use crate::server::RunningServer;

/// A provider the proxy forwards to.
#[derive(Clone)]
pub struct Upstream {
    /// The first path segment clients use, and the provider name usage is
    /// recorded and priced under (`anthropic`, `openai`, `gemini`, `ollama`).
    pub name: String,
    /// Its wire format.
    pub kind: ProviderKind,
    /// Its base URL, without the API version.
    pub base_url: String,
    /// The real key, injected on the way out.
    pub api_key: Option<SecretString>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Upstream {
    /// An upstream named after `kind`.
    pub fn new(kind: ProviderKind, base_url: impl Into<String>, api_key: Option<SecretString>) -> Self {
        Self {
            name: kind.as_str().to_string(),
            kind,
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key,
        }
    }

    /// The same under another name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// Limits and switches of the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// Largest request body accepted (32 MiB).
    pub max_body_bytes: usize,
    /// Largest non-streamed response read (64 MiB).
    pub max_response_bytes: usize,
    /// Limit for a whole upstream exchange, streams included (30 min).
    pub upstream_timeout: Duration,
    /// Check in the store, on every request, that the token's run is not in
    /// an end state (default true).
    pub check_run_state: bool,
    /// The default caps, for projects without their own
    /// ([`Proxy::set_project_budget`]).
    pub budgets: BudgetConfig,
    /// Requests one run may have in flight at once (4); more get a 429 that
    /// clients retry.
    pub run_concurrency: usize,
    /// Requests the proxy serves at once, all runs together (512); more get
    /// a 503. With [`max_body_bytes`](Self::max_body_bytes), it bounds the
    /// memory request bodies can hold.
    pub max_in_flight: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_response_bytes: 64 << 20,
            upstream_timeout: Duration::from_secs(1800),
            check_run_state: true,
            budgets: BudgetConfig::default(),
            run_concurrency: 4,
            max_in_flight: 512,
        }
    }
}

/// Background work (usage records, budget events) not yet finished.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

/// Holds one unit of pending work until dropped.
pub(crate) struct PendingGuard(Arc<Pending>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Pending {
    pub(crate) fn guard(self: &Arc<Self>) -> PendingGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        PendingGuard(self.clone())
    }

    pub(crate) fn spawn(self: &Arc<Self>, fut: impl Future<Output = ()> + Send + 'static) {
        let guard = self.guard();
        tokio::spawn(async move {
            fut.await;
            drop(guard);
        });
    }

    async fn settled(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) upstreams: HashMap<String, Upstream>,
    pub(crate) tokens: TokenRegistry,
    pub(crate) budgets: Arc<Budgets>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) prices: Arc<PriceRegistry>,
    pub(crate) metrics: LlmMetrics,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) http: reqwest::Client,
    pub(crate) observer: Arc<dyn BudgetObserver>,
    pub(crate) pending: Arc<Pending>,
    pub(crate) in_flight: limits::InFlight,
}

/// The proxy. Clones share tokens, budgets and connections.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.shared.upstreams.values().collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        f.debug_struct("Proxy").field("upstreams", &names).field("config", &self.shared.config).finish()
    }
}

/// Builds a [`Proxy`].
pub struct ProxyBuilder {
    store: Arc<dyn Store>,
    upstreams: Vec<Upstream>,
    config: ProxyConfig,
    prices: Option<Arc<PriceRegistry>>,
    metrics: Option<LlmMetrics>,
    clock: Option<Arc<dyn Clock>>,
    observer: Option<Arc<dyn BudgetObserver>>,
    http: Option<reqwest::Client>,
    project_budgets: Vec<(ProjectId, BudgetConfig)>,
}

impl fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyBuilder").field("upstreams", &self.upstreams).field("config", &self.config).finish()
    }
}

impl ProxyBuilder {
    /// Adds an upstream.
    pub fn upstream(mut self, upstream: Upstream) -> Self {
        self.upstreams.push(upstream);
        self
    }

    /// Sets limits and caps.
    pub fn config(mut self, config: ProxyConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the default caps.
    pub fn budgets(mut self, budgets: BudgetConfig) -> Self {
        self.config.budgets = budgets;
        self
    }

    /// Gives `project` caps of its own (see [`Proxy::set_project_budget`]).
    pub fn project_budget(mut self, project: ProjectId, budgets: BudgetConfig) -> Self {
        self.project_budgets.push((project, budgets));
        self
    }

    /// Prices requests with `prices` (default: the built-in registry).
    pub fn prices(mut self, prices: Arc<PriceRegistry>) -> Self {
        self.prices = Some(prices);
        self
    }

    /// Records metrics into `metrics` (default: a private, unexported set).
    pub fn metrics(mut self, metrics: LlmMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Tells time with `clock` (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Reports budget events to `observer` (default: audit events in the store).
    pub fn observer(mut self, observer: Arc<dyn BudgetObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Uses `http` to reach upstreams (default: [`crate::providers::http_client`]).
    /// It should follow no redirects (`reqwest::redirect::Policy::none()`):
    /// requests carry the real API keys. Whatever it does, an upstream's
    /// redirect is never passed on to the caller (see the forwarding).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Checks the configuration and builds the proxy.
    pub fn build(self) -> Result<Proxy, Error> {
        let mut upstreams = HashMap::new();
        for u in self.upstreams {
            let valid_name =
                !u.name.is_empty() && u.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !valid_name || u.name == "health" {
                return Err(Error::Config {
                    what: format!("upstream name {:?}", u.name),
                    message: "use letters, digits, '-' or '_' (and not \"health\")".into(),
                });
            }
            if !(u.base_url.starts_with("http://") || u.base_url.starts_with("https://")) {
                return Err(Error::Config {
                    what: format!("upstream {} base_url", u.name),
                    message: format!("{:?} is not an http(s) URL", u.base_url),
                });
            }
            if u.api_key.is_none() && u.kind != ProviderKind::Compatible {
                return Err(Error::Config {
                    what: format!("upstream {} api_key", u.name),
                    message: "a key is required for this provider".into(),
                });
            }
            if upstreams.insert(u.name.clone(), u).is_some() {
                return Err(Error::Config { what: "upstreams".into(), message: "two upstreams share a name".into() });
            }
        }
        let prices = match self.prices {
            Some(p) => p,
            None => Arc::new(PriceRegistry::builtin()?),
        };
        let http = match self.http {
            Some(h) => h,
            None => crate::providers::http_client()?,
        };
        let observer = self.observer.unwrap_or_else(|| Arc::new(AuditObserver::new(self.store.clone())));
        let metrics = self.metrics.unwrap_or_default();
        let clock: Arc<dyn Clock> = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let budgets = Arc::new(
            Budgets::new(self.config.budgets, self.store.clone())
                .with_metrics(metrics.clone())
                .with_clock(clock.clone()),
        );
        for (project, config) in self.project_budgets {
            budgets.set_project(project, Some(config));
        }
        let in_flight = limits::InFlight::new(self.config.run_concurrency, self.config.max_in_flight);
        Ok(Proxy {
            shared: Arc::new(Shared {
                budgets,
                config: self.config,
                upstreams,
                tokens: TokenRegistry::default(),
                store: self.store,
                prices,
                metrics,
                clock,
                http,
                observer,
                pending: Arc::new(Pending::default()),
                in_flight,
            }),
        })
    }
}

impl Proxy {
    /// Starts building a proxy recording into `store`.
    pub fn builder(store: Arc<dyn Store>) -> ProxyBuilder {
        ProxyBuilder {
            store,
            upstreams: Vec::new(),
            config: ProxyConfig::default(),
            prices: None,
            metrics: None,
            clock: None,
            observer: None,
            http: None,
            project_budgets: Vec::new(),
        }
    }

    /// The axum router: `GET /health`, and every upstream under `/{name}/`.
    pub fn router(&self) -> Router {
        Router::new().route("/health", get(|| async { "ok" })).fallback(forward::handle).with_state(self.shared.clone())
    }

    /// Binds `addr` and serves in the background.
    pub async fn spawn(&self, addr: SocketAddr) -> Result<RunningServer, Error> {
        RunningServer::bind(addr, self.router()).await
    }

    /// Issues a token for `run` of `project`, valid until revoked or the run ends.
    pub fn issue_token(&self, run: RunId, project: ProjectId) -> RunToken {
        self.issue_token_with(run, project, None, RunLimits::default())
    }

    /// Issues a token that also expires at `expires_at`, with per-run limits.
    pub fn issue_token_with(
        &self,
        run: RunId,
        project: ProjectId,
        expires_at: Option<Timestamp>,
        limits: RunLimits,
    ) -> RunToken {
        self.shared.tokens.issue(Grant { run_id: run, project_id: project, expires_at, limits })
    }

    /// The endpoint to hand an agent: `base_url` is how the sandbox reaches
    /// the proxy (e.g. `http://127.0.0.1:3128`).
    pub fn endpoint(&self, base_url: &str, token: &RunToken) -> ProxyEndpoint {
        ProxyEndpoint { base_url: base_url.trim_end_matches('/').to_string(), token: token.secret() }
    }

    /// Revokes every token of `run` (call when it ends). Returns how many.
    pub fn revoke(&self, run: RunId) -> usize {
        self.shared.in_flight.forget(run);
        self.shared.tokens.revoke(run)
    }

    /// The cap `run` hit, if it hit one: its requests are being refused and
    /// it should end as `budget_exceeded`.
    pub fn budget_breach(&self, run: RunId) -> Option<Breach> {
        self.shared.budgets.breach(run)
    }

    /// Gives `project` caps of its own, which replace the default caps for
    /// every request of its runs from now on (tokens carry their project).
    /// Its daily and monthly caps count only its own spending.
    pub fn set_project_budget(&self, project: ProjectId, budgets: BudgetConfig) {
        self.shared.budgets.set_project(project, Some(budgets));
    }

    /// Returns `project` to the default caps (e.g. when it is removed).
    pub fn clear_project_budget(&self, project: ProjectId) {
        self.shared.budgets.set_project(project, None);
    }

    /// The caps that apply to `project`'s runs.
    pub fn project_budget(&self, project: ProjectId) -> BudgetConfig {
        self.shared.budgets.config_for(project)
    }

    /// The default caps.
    pub fn default_budget(&self) -> BudgetConfig {
        *self.shared.budgets.config()
    }

    /// What `run` spent through this proxy (and before, per the store).
    pub fn spend(&self, run: RunId) -> Spend {
        self.shared.budgets.spend(run)
    }

    /// What requests in flight hold against `project`'s caps this month,
    /// in micro-USD.
    pub fn project_reserved_micros(&self, project: ProjectId) -> i64 {
        self.shared.budgets.project_reserved_micros(project, self.shared.clock.now())
    }

    /// What `run`'s requests in flight hold against its caps (see
    /// [`budget::Reservation`]).
    pub fn reserved(&self, run: RunId) -> Spend {
        self.shared.budgets.reserved(run)
    }

    /// Waits until every usage record and budget event so far is written.
    pub async fn settled(&self) {
        self.shared.pending.settled().await
    }
}
