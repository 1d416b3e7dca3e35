//! Remote engines over mutual TLS: [`TlsConfig`], and the client that
//! trusts only the configured CA.
//!
//! A `tcp://` or `https://` endpoint is reached over TLS 1.2 or 1.3 with
//! the client certificate, as `docker --tlsverify` does: the engine's
//! certificate must chain to the configured CA (and no other: the system's
//! roots are not consulted) and name the endpoint's host. Plaintext
//! `tcp://` / `http://` needs [`insecure`](crate::DockerConfig::insecure).
//! Unix sockets are unaffected.
//!
//! bollard's own `Docker::connect_with_ssl` adds every system root CA to
//! the configured one, and reads the client key only at the first
//! handshake; this module builds the rustls configuration itself (ring,
//! like the rest of the workspace) and hands bollard a transport, so a
//! missing or mismatched file fails when the runtime connects.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard::{API_DEFAULT_VERSION, BollardRequest, Docker};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::error::DockerError;

/// The files of mutual TLS with a remote engine, as Docker's client uses
/// them (`DOCKER_CERT_PATH` with `ca.pem`, `cert.pem`, `key.pem`).
///
/// All three are needed: the CA that signed the engine's certificate, and
/// the client certificate and key the engine (`dockerd --tlsverify`)
/// accepts. Each comes from its own field, or else from
/// [`cert_path`](Self::cert_path).
///
/// ```
/// use paid_runtime_docker::DockerConfig;
///
/// let toml_like = r#"{
///     "endpoint": "tcp://10.0.0.5:2376",
///     "tls": { "cert_path": "/etc/paid/docker", "key": "/run/secrets/docker-key.pem" }
/// }"#;
/// let config: DockerConfig = serde_json::from_str(toml_like).unwrap();
/// let tls = config.tls.unwrap();
/// assert_eq!(tls.ca_file().unwrap(), std::path::Path::new("/etc/paid/docker/ca.pem"));
/// assert_eq!(tls.key_file().unwrap(), std::path::Path::new("/run/secrets/docker-key.pem"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// A directory holding `ca.pem`, `cert.pem` and `key.pem`, like
    /// Docker's `DOCKER_CERT_PATH`. Default `None`.
    pub cert_path: Option<PathBuf>,
    /// The CA certificate(s), PEM. Default: `<cert_path>/ca.pem`.
    pub ca: Option<PathBuf>,
    /// The client certificate (chain), PEM. Default: `<cert_path>/cert.pem`.
    pub cert: Option<PathBuf>,
    /// The client's private key, PEM (PKCS#8, PKCS#1 or SEC1). Default:
    /// `<cert_path>/key.pem`.
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// The three files of a `DOCKER_CERT_PATH`-style directory.
    pub fn from_cert_path(dir: impl Into<PathBuf>) -> Self {
        Self { cert_path: Some(dir.into()), ..Self::default() }
    }

    /// The CA file: [`ca`](Self::ca), or `ca.pem` in
    /// [`cert_path`](Self::cert_path). `None` when neither is set.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.file(self.ca.as_deref(), "ca.pem")
    }

    /// The client certificate file: [`cert`](Self::cert), or `cert.pem` in
    /// [`cert_path`](Self::cert_path).
    pub fn cert_file(&self) -> Option<PathBuf> {
        self.file(self.cert.as_deref(), "cert.pem")
    }

    /// The client key file: [`key`](Self::key), or `key.pem` in
    /// [`cert_path`](Self::cert_path).
    pub fn key_file(&self) -> Option<PathBuf> {
        self.file(self.key.as_deref(), "key.pem")
    }

    fn file(&self, explicit: Option<&Path>, name: &str) -> Option<PathBuf> {
        explicit.map(Path::to_path_buf).or_else(|| self.cert_path.as_ref().map(|dir| dir.join(name)))
    }

    /// Reads and checks the three files into a rustls client configuration
    /// that trusts only the CA and presents the client certificate.
    pub(crate) fn client_config(&self, endpoint: &str) -> Result<rustls::ClientConfig, DockerError> {
        let error = |message: String| DockerError::Tls { endpoint: endpoint.to_string(), message };
        let need = |file: Option<PathBuf>, field: &str, name: &str| {
            file.ok_or_else(|| error(format!("no {name}: set `tls.{field}` or `tls.cert_path`")))
        };
        let ca = need(self.ca_file(), "ca", "CA certificate")?;
        let cert = need(self.cert_file(), "cert", "client certificate")?;
        let key = need(self.key_file(), "key", "client key")?;

        let mut roots = rustls::RootCertStore::empty();
        for der in certificates(&ca, "CA certificate").map_err(error)? {
            roots.add(der).map_err(|e| error(format!("the CA certificate in {} is not usable: {e}", ca.display())))?;
        }
        let chain = certificates(&cert, "client certificate").map_err(error)?;
        let key_der = read(&key, "client key")
            .and_then(|pem| {
                PrivateKeyDer::from_pem_slice(&pem)
                    .map_err(|e| format!("{} holds no PEM private key: {e}", key.display()))
            })
            .map_err(error)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| error(format!("no TLS version available: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)
            .map_err(|e| {
                error(format!("the client key {} does not fit the certificate {}: {e}", key.display(), cert.display()))
            })
    }
}

/// The bytes of `path`, or a message naming it as `what`.
fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

/// The PEM certificates in `path`; at least one.
fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the {what} file {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("the {what} file {} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A client for `endpoint` (`tcp://host:port` or `https://host:port`) over
/// mutual TLS with `tls`'s files.
pub(crate) fn connect(endpoint: &str, tls: &TlsConfig, timeout: u64) -> Result<Docker, DockerError> {
    let config = tls.client_config(endpoint)?;
    let address = endpoint.strip_prefix("tcp://").or_else(|| endpoint.strip_prefix("https://")).ok_or_else(|| {
        DockerError::Tls {
            endpoint: endpoint.to_string(),
            message: "TLS is for tcp:// and https:// endpoints".to_string(),
        }
    })?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = HttpsConnectorBuilder::new().with_tls_config(config).https_only().enable_http1().wrap_connector(http);
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_max_idle_per_host(0);
    let client = Arc::new(builder.build(https));
    let transport = move |req: BollardRequest| {
        let client = client.clone();
        async move { client.request(req).await.map_err(bollard::errors::Error::from) }
    };
    let address = format!("https://{}", address.trim_end_matches('/'));
    Docker::connect_with_custom_transport(transport, Some(address), timeout, API_DEFAULT_VERSION)
        .map_err(|source| DockerError::Unreachable { endpoint: endpoint.to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_files_override_the_cert_path() {
        let tls = TlsConfig { key: Some("/secret/k.pem".into()), ..TlsConfig::from_cert_path("/certs") };
        assert_eq!(tls.ca_file(), Some(PathBuf::from("/certs/ca.pem")));
        assert_eq!(tls.cert_file(), Some(PathBuf::from("/certs/cert.pem")));
        assert_eq!(tls.key_file(), Some(PathBuf::from("/secret/k.pem")));
        assert_eq!(TlsConfig::default().ca_file(), None);
    }

    #[test]
    fn every_file_is_required() {
        let err = TlsConfig { ca: Some("/x/ca.pem".into()), ..TlsConfig::default() }
            .client_config("tcp://h:2376")
            .unwrap_err();
        assert_eq!(err.to_string(), "TLS for tcp://h:2376: no client certificate: set `tls.cert` or `tls.cert_path`");
    }
}
