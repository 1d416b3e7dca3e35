//! `/health/ready`: can the daemon reach its store, Docker and the forge?

use std::sync::Arc;
use std::time::{Duration, Instant};

use paid_core::Store;
use paid_runtime_docker::DockerRuntime;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::Mutex;

/// One dependency's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `store`, `docker` or `forge`.
    pub name: &'static str,
    /// Whether it answered as expected.
    pub ok: bool,
    /// What was found.
    pub message: String,
}

/// Every check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadyReport {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// The checks.
    pub checks: Vec<Check>,
}

/// Runs the readiness checks, caching the answer briefly so probes do not
/// hammer GitHub.
pub struct Readiness {
    store: Arc<dyn Store>,
    runtime: Option<DockerRuntime>,
    http: reqwest::Client,
    github_api: String,
    token: Option<SecretString>,
    source: Option<Arc<crate::forge_token::ForgeToken>>,
    cache: Mutex<Option<(Instant, ReadyReport)>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").field("github_api", &self.github_api).finish_non_exhaustive()
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);
const CACHE_FOR: Duration = Duration::from_secs(5);

impl Readiness {
    /// Checks for these dependencies.
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Option<DockerRuntime>,
        http: reqwest::Client,
        github_api: String,
        token: Option<SecretString>,
    ) -> Self {
        Self { store, runtime, http, github_api, token, source: None, cache: Mutex::new(None) }
    }

    /// Checks the forge with `source`'s current token (one stored while
    /// the daemon runs) instead of the one given to [`Readiness::new`].
    pub fn token_source(mut self, source: Arc<crate::forge_token::ForgeToken>) -> Self {
        self.source = Some(source);
        self
    }

    /// The report (cached for a few seconds).
    pub async fn report(&self) -> ReadyReport {
        let mut cache = self.cache.lock().await;
        if let Some((at, r)) = cache.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return r.clone();
        }
        let (store, docker, forge) = tokio::join!(self.store_check(), self.docker_check(), self.forge_check());
        let checks = vec![store, docker, forge];
        let status = if checks.iter().all(|c| c.ok) { "ok" } else { "degraded" };
        let report = ReadyReport { status, checks };
        *cache = Some((Instant::now(), report.clone()));
        report
    }

    async fn store_check(&self) -> Check {
        match tokio::time::timeout(TIMEOUT, self.store.projects()).await {
            Ok(Ok(p)) => Check { name: "store", ok: true, message: format!("{} projects", p.len()) },
            Ok(Err(e)) => Check { name: "store", ok: false, message: e.to_string() },
            Err(_) => Check { name: "store", ok: false, message: "timed out".into() },
        }
    }

    async fn docker_check(&self) -> Check {
        let Some(rt) = &self.runtime else {
            return Check { name: "docker", ok: false, message: "not connected".into() };
        };
        match tokio::time::timeout(TIMEOUT, rt.client().ping()).await {
            Ok(Ok(_)) => Check { name: "docker", ok: true, message: rt.config().endpoint_display() },
            Ok(Err(e)) => {
                Check { name: "docker", ok: false, message: format!("{}: {e}", rt.config().endpoint_display()) }
            }
            Err(_) => Check { name: "docker", ok: false, message: "timed out".into() },
        }
    }

    async fn forge_check(&self) -> Check {
        let mut req = self.http.get(format!("{}/rate_limit", self.github_api)).timeout(TIMEOUT);
        let token = match &self.source {
            Some(s) => s.current().1,
            None => self.token.clone(),
        };
        if let Some(t) = &token {
            req = req.bearer_auth(t.expose_secret());
        }
        match req.send().await {
            Ok(r) if r.status().as_u16() == 401 => {
                Check { name: "forge", ok: false, message: format!("{} rejected the token (401)", self.github_api) }
            }
            Ok(r) if r.status().is_server_error() => {
                Check { name: "forge", ok: false, message: format!("{} answered {}", self.github_api, r.status()) }
            }
            Ok(r) => {
                let remaining =
                    r.headers().get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()).map(str::to_string);
                let message = match remaining {
                    Some(n) => format!("{} reachable, {n} calls left", self.github_api),
                    None => format!("{} reachable", self.github_api),
                };
                Check { name: "forge", ok: true, message }
            }
            Err(e) => Check { name: "forge", ok: false, message: format!("cannot reach {}: {e}", self.github_api) },
        }
    }
}
