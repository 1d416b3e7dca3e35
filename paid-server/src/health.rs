//! `/health/ready`: can the daemon reach its store, Docker and the forge?

use std::sync::Arc;
use std::time::{Duration, Instant};

use paid_core::Store;
use paid_runtime_docker::DockerRuntime;

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
    github_api: String,
    token: Arc<crate::forge_token::ForgeToken>,
    forge_given: bool,
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
    /// Checks for these dependencies. The forge is checked with `token`'s
    /// current token through the forge's own client, unless `forge_given`
    /// (an embedder's forge, which this server cannot check).
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Option<DockerRuntime>,
        github_api: String,
        token: Arc<crate::forge_token::ForgeToken>,
        forge_given: bool,
    ) -> Self {
        Self { store, runtime, github_api, token, forge_given, cache: Mutex::new(None) }
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
        match tokio::time::timeout(TIMEOUT, rt.ping()).await {
            Ok(Ok(_)) => Check { name: "docker", ok: true, message: rt.config().endpoint_display() },
            Ok(Err(e)) => {
                Check { name: "docker", ok: false, message: format!("{}: {e}", rt.config().endpoint_display()) }
            }
            Err(_) => Check { name: "docker", ok: false, message: "timed out".into() },
        }
    }

    async fn forge_check(&self) -> Check {
        if self.forge_given {
            return Check { name: "forge", ok: true, message: "given by the embedder; not checked".into() };
        }
        let Some(token) = self.token.current() else {
            return Check { name: "forge", ok: false, message: "no GitHub token configured".into() };
        };
        match tokio::time::timeout(TIMEOUT, crate::github::check_token(&self.github_api, &token, &[])).await {
            Ok(Ok(c)) => {
                let message = match c.rate_limit_remaining {
                    Some(n) => format!("{} reachable, {n} calls left", self.github_api),
                    None => format!("{} reachable", self.github_api),
                };
                Check { name: "forge", ok: true, message }
            }
            Ok(Err(e)) => Check { name: "forge", ok: false, message: e.to_string() },
            Err(_) => Check { name: "forge", ok: false, message: format!("{} timed out", self.github_api) },
        }
    }
}
