//! Remote engines over TLS only: plaintext `tcp://` / `http://` endpoints
//! are refused unless `insecure` is set, TLS files are checked when the
//! runtime connects, and a runtime reaches a real engine over mutual TLS,
//! through a TLS-terminating proxy on 127.0.0.1 in front of the local
//! socket (certificates made here with rcgen). A client without a
//! certificate the proxy's CA signed is turned away, and the runtime
//! refuses an engine its configured CA did not sign or that is named
//! otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use paid_core::testing::sandbox::{self as suite, sh, with_sandbox};
use paid_core::{Error, ExecExit};
use paid_runtime_docker::{DockerConfig, DockerRuntime, TlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use common::{docker_required, image};

/// A certificate authority of the test.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    /// A certificate for `names` with `purpose`: (certificate PEM, key PEM).
    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate in `dir` as `ca.pem`, `cert.pem`, `key.pem`,
    /// trusting `trust` for the engine.
    fn client_files(&self, dir: &Path, trust: &Ca) -> TlsConfig {
        let (cert, key) = self.issue(&["paid-client"], ExtendedKeyUsagePurpose::ClientAuth);
        std::fs::create_dir_all(dir).unwrap();
        write(&dir.join("ca.pem"), &trust.pem());
        write(&dir.join("cert.pem"), &cert);
        write(&dir.join("key.pem"), &key);
        TlsConfig::from_cert_path(dir)
    }
}

fn write(path: &Path, text: &str) {
    std::fs::File::create(path).unwrap().write_all(text.as_bytes()).unwrap();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The local engine's socket.
fn docker_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => PathBuf::from(host.trim_start_matches("unix://")),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// Starts a proxy on 127.0.0.1 that terminates TLS with a certificate for
/// `names` from `server_ca`, requires a client certificate from
/// `client_ca`, and pipes every connection to the local engine's socket.
/// It runs until the test's runtime ends.
async fn tls_proxy(server_ca: &Ca, names: &[&str], client_ca: &Ca) -> SocketAddr {
    let (cert, key) = server_ca.issue(names, ExtendedKeyUsagePurpose::ServerAuth);
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.0.der().clone()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut engine) = UnixStream::connect(docker_socket()).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
            });
        }
    });
    address
}

fn config(endpoint: String, tls: Option<TlsConfig>) -> DockerConfig {
    DockerConfig { endpoint: Some(endpoint), tls, ..DockerConfig::default() }
}

/// Captures what the runtime logs while `f` runs on this thread.
async fn logged<T>(f: impl std::future::Future<Output = T>) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let out = f.await;
    drop(guard);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[tokio::test]
async fn plaintext_tcp_is_refused_unless_insecure_is_set() {
    for endpoint in ["tcp://127.0.0.1:9", "http://127.0.0.1:9", "TCP://127.0.0.1:9"] {
        let (err, log) = logged(DockerRuntime::connect(config(endpoint.into(), None))).await;
        let err = err.unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{endpoint}: {err:?}");
        let message = err.to_string();
        assert!(
            message.contains(endpoint) && message.contains("`tls`") && message.contains("`insecure = true`"),
            "{message}"
        );
        assert!(log.is_empty(), "{log}");

        // Explicitly insecure: accepted (and then unreachable), with a warning.
        let insecure = DockerConfig { insecure: true, ..config(endpoint.into(), None) };
        let (err, log) = logged(DockerRuntime::connect(insecure)).await;
        let err = err.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{endpoint}: {err:?}");
        assert!(log.contains("WARN") && log.contains("plaintext") && log.contains(endpoint), "{log}");
    }

    // One plaintext engine among several is enough to refuse them all.
    let several = DockerConfig {
        endpoints: vec!["unix:///var/run/docker.sock".into(), "tcp://127.0.0.1:9".into()],
        ..DockerConfig::default()
    };
    let err = DockerRuntime::connect(several).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
}

#[tokio::test]
async fn https_needs_tls_and_http_is_not_taken_for_tls() {
    let err = DockerRuntime::connect(config("https://127.0.0.1:9".into(), None)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }) && err.to_string().contains("needs `tls`"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let tls = ca.client_files(dir.path(), &ca);
    let err = DockerRuntime::connect(config("http://127.0.0.1:9".into(), Some(tls))).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }) && err.to_string().contains("plaintext HTTP"), "{err}");
}

#[tokio::test]
async fn unusable_tls_files_are_named_when_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let good = ca.client_files(&dir.path().join("good"), &ca);
    let endpoint = "tcp://127.0.0.1:9";
    let refused = async |tls: TlsConfig| {
        let err = DockerRuntime::connect(config(endpoint.into(), Some(tls))).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
        err.to_string()
    };

    let missing = dir.path().join("nowhere");
    let message = refused(TlsConfig::from_cert_path(&missing)).await;
    assert!(
        message.starts_with(&format!(
            "invalid docker tls: TLS for {endpoint}: cannot read the CA certificate {}",
            missing.join("ca.pem").display()
        )),
        "{message}"
    );

    let message = refused(TlsConfig { ca: good.ca_file(), ..TlsConfig::default() }).await;
    assert!(message.contains("no client certificate: set `tls.cert` or `tls.cert_path`"), "{message}");

    let garbage = dir.path().join("garbage.pem");
    write(&garbage, "not a certificate\n");
    let message = refused(TlsConfig { ca: Some(garbage.clone()), ..good.clone() }).await;
    assert!(message.contains("holds no PEM certificate") && message.contains("garbage.pem"), "{message}");
    let message = refused(TlsConfig { key: Some(garbage), ..good.clone() }).await;
    assert!(message.contains("holds no PEM private key"), "{message}");

    // A key that belongs to another certificate.
    let other = ca.client_files(&dir.path().join("other"), &ca);
    let message = refused(TlsConfig { key: other.key_file(), ..good.clone() }).await;
    assert!(message.contains("does not fit the certificate"), "{message}");

    // The good files pass the checks; the engine is then simply not there.
    let err = DockerRuntime::connect(config(endpoint.into(), Some(good))).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_reaches_the_engine_over_mutual_tls() {
    docker_required().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let address = tls_proxy(&ca, &["127.0.0.1", "localhost"], &ca).await;
    let tls = ca.client_files(dir.path(), &ca);

    for endpoint in [format!("tcp://{address}"), format!("https://localhost:{}", address.port())] {
        let runtime = DockerRuntime::connect(config(endpoint.clone(), Some(tls.clone()))).await.unwrap();
        runtime.ping().await.unwrap();
        assert_eq!(runtime.endpoints(), vec![endpoint]);
    }

    // Exec streams (an upgraded connection) work through it too.
    let runtime = DockerRuntime::connect(config(format!("tcp://{address}"), Some(tls))).await.unwrap();
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let out = sh(&runtime, sandbox, "echo over-tls; echo err >&2").await;
        assert_eq!(out.exit, ExecExit::Code(0));
        assert_eq!((out.stdout_text().as_str(), out.stderr_text().as_str()), ("over-tls\n", "err\n"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_and_engines_outside_the_pki_are_turned_away() {
    docker_required().await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, stranger) = (Ca::new(), Ca::new());
    let address = tls_proxy(&ca, &["127.0.0.1"], &ca).await;

    // Without a client certificate the proxy answers nothing.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.0.der().clone()).unwrap();
    let anonymous = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut reply = Vec::new();
    if let Ok(mut tls) = TlsConnector::from(Arc::new(anonymous)).connect(name, tcp).await {
        let _ = tls.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n").await;
        let _ = tls.read_to_end(&mut reply).await;
    }
    assert!(!String::from_utf8_lossy(&reply).contains("200 OK"), "{}", String::from_utf8_lossy(&reply));

    let unavailable = async |endpoint: String, tls: TlsConfig| {
        let err = DockerRuntime::connect(config(endpoint, Some(tls))).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    };
    // A client certificate from another CA.
    unavailable(format!("tcp://{address}"), stranger.client_files(&dir.path().join("a"), &ca)).await;
    // An engine certificate the configured CA did not sign.
    unavailable(format!("tcp://{address}"), ca.client_files(&dir.path().join("b"), &stranger)).await;
    // An engine certificate for another name.
    unavailable(format!("https://localhost:{}", address.port()), ca.client_files(&dir.path().join("c"), &ca)).await;
}
