//! One Docker engine the runtime places sandboxes on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::{API_DEFAULT_VERSION, Docker};

use crate::config::{DockerConfig, display_of};
use crate::container::role;
use crate::error::DockerError;
use crate::exec::{Cleanups, ExecTarget, OomCounts};
use crate::tls;

/// A connected engine: its client, how it is named, and what the runtime
/// keeps per engine (OOM counters, the egress forwarder, creates in flight).
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// Position in the configured list.
    pub(crate) index: usize,
    /// The endpoint as configured (or the local default), also the value of
    /// the `<prefix>.endpoint` label on what is placed through it.
    pub(crate) name: Arc<str>,
    /// The client.
    pub(crate) docker: Docker,
    /// Last `oom_kill` count per sandbox.
    pub(crate) oom: Arc<OomCounts>,
    /// Clean-ups of dropped execs under way, per sandbox.
    pub(crate) cleanups: Arc<Cleanups>,
    /// Held while this runtime checks, creates or removes the egress
    /// forwarder of this engine.
    pub(crate) forwarder: tokio::sync::Mutex<()>,
    /// Sandboxes being created through this endpoint right now; counted
    /// as load so concurrent creates spread.
    pub(crate) in_flight: AtomicUsize,
}

/// How one endpoint is reached: its client, settled from the configuration
/// before anything is dialled.
#[derive(Debug)]
pub(crate) struct Transport {
    name: Arc<str>,
    docker: Docker,
}

impl Transport {
    /// The client for `endpoint` (`None`: the local default): a Unix socket
    /// as it is; `tcp://` and `https://` over mutual TLS with
    /// [`DockerConfig::tls`]; plaintext `tcp://` and `http://` only with
    /// [`DockerConfig::insecure`] (with a warning), refused otherwise.
    pub(crate) fn of(endpoint: Option<&str>, config: &DockerConfig) -> Result<Self, DockerError> {
        let name: Arc<str> = display_of(endpoint).into();
        let timeout = config.request_timeout_secs;
        let unreachable = |source| DockerError::Unreachable { endpoint: name.to_string(), source };
        let invalid = |message: String| DockerError::Invalid { what: "endpoint", message };
        let scheme = endpoint.and_then(|e| e.split_once("://")).map(|(scheme, _)| scheme.to_ascii_lowercase());
        let docker = match (endpoint, scheme.as_deref()) {
            (None, _) => Docker::connect_with_local_defaults().map_err(unreachable)?,
            (Some(path), _) if path.starts_with('/') => {
                Docker::connect_with_unix(path, timeout, API_DEFAULT_VERSION).map_err(unreachable)?
            }
            (Some(uri), Some(scheme @ ("tcp" | "https" | "http"))) => match (&config.tls, scheme) {
                (Some(tls), "tcp" | "https") => tls::connect(uri, tls, timeout)?,
                (Some(_), _) => {
                    return Err(invalid(format!(
                        "{uri} is plaintext HTTP although `tls` is set; write tcp:// or https:// to use TLS"
                    )));
                }
                (None, "https") => {
                    return Err(invalid(format!(
                        "{uri} needs `tls`: the CA, client certificate and key (`ca`, `cert`, `key` or \
                         `cert_path`)"
                    )));
                }
                (None, _) if config.insecure => {
                    tracing::warn!(
                        endpoint = uri,
                        "`insecure` is set: talking to this Docker engine in plaintext, without authentication; \
                         anyone who can reach it controls it. Set `tls` instead"
                    );
                    Docker::connect_with_http(uri, timeout, API_DEFAULT_VERSION).map_err(unreachable)?
                }
                (None, _) => {
                    return Err(invalid(format!(
                        "{uri} would be plaintext and unauthenticated, so anyone who reaches it controls the \
                         engine: set `tls` (`ca`, `cert` and `key`, or `cert_path`) for mutual TLS, or \
                         `insecure = true` to accept that"
                    )));
                }
            },
            (Some(uri), _) => Docker::connect_with_host(uri).map_err(unreachable)?,
        };
        Ok(Self { name, docker: docker.with_timeout(Duration::from_secs(timeout)) })
    }
}

impl Endpoint {
    /// Connects through `transport` and agrees on an API version (older
    /// engines, such as 20.10 with API 1.41, are fine).
    pub(crate) async fn connect(index: usize, transport: Transport) -> Result<Self, DockerError> {
        let Transport { name, docker } = transport;
        let docker = docker.negotiate_version().await.map_err(|e| DockerError::from_bollard("version", &name, e))?;
        tracing::debug!(endpoint = %name, api = %docker.client_version(), "connected to the Docker engine");
        Ok(Self {
            index,
            name,
            docker,
            oom: Arc::default(),
            cleanups: Arc::default(),
            forwarder: tokio::sync::Mutex::new(()),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Maps a bollard error of operation `op` on this engine.
    pub(crate) fn api(&self, op: &'static str) -> impl FnOnce(bollard::errors::Error) -> DockerError + '_ {
        move |e| DockerError::from_bollard(op, &self.name, e)
    }

    /// What an exec in container `id` needs.
    pub(crate) fn target(&self, config: &DockerConfig, id: &str) -> ExecTarget {
        ExecTarget {
            docker: self.docker.clone(),
            endpoint: self.name.clone(),
            sandbox: id.to_string(),
            user: config.user.clone(),
            umask: config.umask.clone(),
            oom: self.oom.clone(),
            cleanups: self.cleanups.clone(),
        }
    }

    /// The load of this endpoint: sandboxes (pooled ones included) placed
    /// through it, as the engine lists them, plus creates in flight. Counting
    /// by the endpoint label rather than every container on the engine keeps
    /// two endpoints naming one engine apart, and lets workers that share
    /// engines (and name them alike) see each other's sandboxes.
    pub(crate) async fn load(&self, config: &DockerConfig) -> Result<usize, DockerError> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{}=true", config.managed_label()),
                format!("{}={}", config.label("role"), role::SANDBOX),
                format!("{}={}", config.label("endpoint"), self.name),
            ],
        )]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let listed = self.docker.list_containers(Some(options)).await.map_err(self.api("list containers"))?;
        Ok(listed.len() + self.in_flight.load(Ordering::SeqCst))
    }

    /// Counts a create in flight until the guard drops.
    pub(crate) fn start_create(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

/// A create in flight on an endpoint (see [`Endpoint::start_create`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The index of the least-loaded endpoint; ties go to the lowest index.
pub(crate) fn least_loaded(loads: &[usize]) -> usize {
    loads.iter().enumerate().min_by_key(|&(i, load)| (*load, i)).map(|(i, _)| i).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_picks_the_fewest_then_the_first() {
        assert_eq!(least_loaded(&[3, 1, 2]), 1);
        assert_eq!(least_loaded(&[2, 2, 2]), 0);
        assert_eq!(least_loaded(&[5, 0, 0]), 1);
        assert_eq!(least_loaded(&[]), 0);
    }
}
