//! Egress control against the real engine: inside a sandbox the proxy
//! answers (through the forwarder), while the host's other ports, the
//! host's addresses, another sandbox and outside addresses do not, and
//! outside names do not resolve. Every probe is bounded by a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bollard::query_parameters::{InspectContainerOptions, InspectNetworkOptions};
use paid_core::testing::sandbox::{self as suite, run, sh};
use paid_core::{ExecExit, ExecRequest, SandboxHandle, SandboxRuntime};
use paid_runtime_docker::{DockerConfig, DockerRuntime, EgressConfig};

use common::{image, managed_networks, runtime_with, unique_prefix, with_cleanup};

/// A host-side HTTP responder on `0.0.0.0`: the stand-in for the metering
/// proxy. Counts the requests it answers.
fn http_responder(body: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    (port, hits)
}

/// The host's address on its default route (no packet is sent).
fn host_address() -> Ipv4Addr {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    socket.connect(("8.8.8.8", 53)).unwrap();
    match socket.local_addr().unwrap().ip() {
        std::net::IpAddr::V4(v4) => v4,
        other => panic!("no IPv4 host address: {other}"),
    }
}

/// Tries a TCP connection to each `host:port` from inside the sandbox,
/// all at once, each bounded by 3 s; returns `(target, "OPEN" | "FAIL ...")`.
async fn probe(runtime: &DockerRuntime, sandbox: &SandboxHandle, targets: &[String]) -> Vec<(String, String)> {
    let script = r#"
import socket, sys, threading
results = {}
def attempt(target):
    host, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, int(port)))
        results[target] = "OPEN"
    except Exception as e:
        results[target] = "FAIL " + type(e).__name__
    finally:
        s.close()
threads = [threading.Thread(target=attempt, args=(t,)) for t in sys.argv[1:]]
for t in threads: t.start()
for t in threads: t.join()
for target in sys.argv[1:]:
    print(target, results[target])
"#;
    let mut argv = vec!["python3".to_string(), "-c".to_string(), script.to_string()];
    argv.extend(targets.iter().cloned());
    let out = run(runtime, sandbox, ExecRequest::argv(argv).with_timeout(Duration::from_secs(60))).await;
    assert_eq!(out.exit, ExecExit::Code(0), "probe: {}", out.stderr_text());
    out.stdout_text()
        .lines()
        .map(|line| {
            let (target, rest) = line.split_once(' ').unwrap();
            (target.to_string(), rest.to_string())
        })
        .collect()
}

async fn ip_on(runtime: &DockerRuntime, container: &str, network: &str) -> String {
    let inspect = runtime.client().inspect_container(container, None::<InspectContainerOptions>).await.unwrap();
    let networks = inspect.network_settings.unwrap().networks.unwrap();
    networks[network].ip_address.clone().unwrap()
}

async fn network_of(runtime: &DockerRuntime, sandbox: &SandboxHandle) -> String {
    let inspect = runtime.client().inspect_container(&sandbox.id, None::<InspectContainerOptions>).await.unwrap();
    inspect.host_config.unwrap().network_mode.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_proxy_is_reachable() {
    let (proxy_port, proxy_hits) = http_responder("paid-proxy-ok");
    let (other_port, other_hits) = http_responder("other-listener");
    // Both host listeners really listen, on every host address.
    let mut own = std::net::TcpStream::connect((host_address(), other_port)).unwrap();
    own.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    own.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with("other-listener"), "{reply}");
    let before = other_hits.load(Ordering::SeqCst);

    let prefix = unique_prefix("egress");
    let config = DockerConfig {
        label_prefix: prefix.clone(),
        egress: Some(EgressConfig::proxy(proxy_port)),
        ..DockerConfig::default()
    };
    let runtime = runtime_with(config).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let (wa, wb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = runtime.create(&suite::spec(&image(), wa.path())).await.unwrap();
        let b = runtime.create(&suite::spec(&image(), wb.path())).await.unwrap();
        let (net_a, net_b) = (network_of(&runtime, &a).await, network_of(&runtime, &b).await);
        assert_ne!(net_a, net_b, "every sandbox has its own network");

        // The proxy's address is in the environment, and it answers.
        let out = sh(&runtime, &a, "echo $PAID_PROXY_URL $PAID_PROXY_HOST $PAID_PROXY_PORT").await;
        let env = out.stdout_text();
        let fields: Vec<&str> = env.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{env}");
        assert_eq!(fields[0], format!("http://{}:{}", fields[1], fields[2]));
        let get = "import os, urllib.request; \
                   print(urllib.request.urlopen(os.environ['PAID_PROXY_URL'] + '/v1/models', timeout=5).read().decode())";
        let out = run(&runtime, &a, ExecRequest::argv(["python3", "-c", get]).with_timeout(Duration::from_secs(30))).await;
        assert_eq!((out.exit, out.stdout_text().as_str()), (ExecExit::Code(0), "paid-proxy-ok\n"), "{}", out.stderr_text());
        assert!(proxy_hits.load(Ordering::SeqCst) >= 1, "the request reached the host-side proxy");
        // The same through the alias every sandbox network resolves.
        for sandbox in [&a, &b] {
            let get = "import urllib.request; \
                       print(urllib.request.urlopen('http://paid-proxy:3128/', timeout=5).read().decode())";
            let req = ExecRequest::argv(["python3", "-c", get]).with_timeout(Duration::from_secs(30));
            let out = run(&runtime, sandbox, req).await;
            assert_eq!(out.stdout_text(), "paid-proxy-ok\n", "{}", out.stderr_text());
        }

        // A listener in sandbox B, which B itself reaches.
        let serve = "nohup python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 & \
                     for i in $(seq 50); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8000), 1)' \
                     2>/dev/null && exit 0; sleep 0.1; done; exit 1";
        assert_eq!(sh(&runtime, &b, serve).await.exit, ExecExit::Code(0), "B's listener is up");
        let b_ip = ip_on(&runtime, &b.id, &net_b).await;

        let forwarder_host: Ipv4Addr = fields[1].parse().unwrap();
        let gateway = Ipv4Addr::from(u32::from(forwarder_host) - 1);
        // The forwarder's uplink: its gateway is the host's docker0 address.
        let forwarder_name = docker
            .inspect_network(&net_a, None::<InspectNetworkOptions>)
            .await
            .unwrap()
            .containers
            .unwrap()
            .into_values()
            .filter_map(|c| c.name)
            .find(|n| n.starts_with(&format!("{prefix}-egress-")))
            .unwrap();
        let forwarder = docker.inspect_container(&forwarder_name, None::<InspectContainerOptions>).await.unwrap();
        let uplink = forwarder.network_settings.unwrap().networks.unwrap()["bridge"].clone();
        let (docker0, forwarder_uplink) = (uplink.gateway.unwrap(), uplink.ip_address.unwrap());
        let host = host_address();

        let allowed = vec![format!("{forwarder_host}:{}", fields[2])];
        let denied = vec![
            format!("{b_ip}:8000"),                // another sandbox
            format!("{docker0}:{other_port}"),     // another host listener, via docker0
            format!("{host}:{other_port}"),        // ... via the host's address
            format!("{gateway}:{other_port}"),     // ... via the network's gateway
            format!("{docker0}:{proxy_port}"),     // the proxy itself, bypassing the forwarder
            format!("{host}:{proxy_port}"),
            format!("{forwarder_host}:22"),        // the forwarder's other ports
            format!("{forwarder_uplink}:3128"),    // the forwarder's other side
            "1.1.1.1:53".to_string(),              // outside
            "8.8.8.8:53".to_string(),
            "1.1.1.1:443".to_string(),
        ];
        let results = probe(&runtime, &a, &[allowed.clone(), denied.clone()].concat()).await;
        eprintln!("{results:#?}");
        assert_eq!(results.len(), allowed.len() + denied.len());
        for (target, result) in &results {
            if allowed.contains(target) {
                assert_eq!(result, "OPEN", "{target} must answer");
            } else {
                assert!(result.starts_with("FAIL"), "{target} must be unreachable from a sandbox, got {result}");
            }
        }
        assert_eq!(other_hits.load(Ordering::SeqCst), before, "nothing reached the other host listener");

        // Names outside the sandbox's network do not resolve.
        let out = sh(
            &runtime,
            &a,
            "timeout 4 getent hosts deb.debian.org || timeout 4 getent hosts example.com || echo unresolved",
        )
        .await;
        assert_eq!(out.stdout_text(), "unresolved\n");

        // The network as the engine holds it: internal, no host address,
        // just the sandbox and the forwarder.
        let net = docker.inspect_network(&net_a, None::<InspectNetworkOptions>).await.unwrap();
        assert_eq!(net.internal, Some(true));
        let options = net.options.unwrap();
        assert_eq!(options["com.docker.network.bridge.inhibit_ipv4"], "true");
        assert_eq!(net.containers.unwrap().len(), 2);
        assert_eq!(net.labels.unwrap()[&format!("{prefix}.managed")], "true");

        // The forwarder is hardened too.
        let inspect = docker.inspect_container(&forwarder_name, None::<InspectContainerOptions>).await.unwrap();
        let host_config = inspect.host_config.unwrap();
        assert_eq!(host_config.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host_config.readonly_rootfs, Some(true));
        assert_eq!(host_config.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(inspect.config.unwrap().user.as_deref(), Some("1000:1000"));

        runtime.remove(&a).await.unwrap();
        runtime.remove(&b).await.unwrap();
        assert!(!managed_networks(&docker, &prefix).await.contains(&net_a), "removing a sandbox removes its network");
        // What is left are spare networks, ready for the next sandboxes.
        for name in managed_networks(&docker, &prefix).await {
            let net = docker.inspect_network(&name, None::<InspectNetworkOptions>).await.unwrap();
            assert!(net.labels.unwrap().contains_key(&format!("{prefix}.spare")), "{name} is not a spare");
        }
        runtime.drain_pool().await;
        let left = managed_networks(&docker, &prefix).await;
        assert!(left.is_empty(), "draining removes the spares: {left:?}");
    })
    .await;
    assert!(managed_networks(&docker, &prefix).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conformance_suite_passes_with_egress() {
    let (proxy_port, _) = http_responder("ok");
    let prefix = unique_prefix("egconf");
    let config = DockerConfig {
        label_prefix: prefix.clone(),
        egress: Some(EgressConfig::proxy(proxy_port)),
        ..DockerConfig::default()
    };
    let runtime = runtime_with(config).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let dir = tempfile::tempdir().unwrap();
        suite::run_all(&runtime, &image(), dir.path()).await;
        runtime.drain_pool().await;
        let left = managed_networks(&docker, &prefix).await;
        for name in &left {
            let net = docker.inspect_network(name, None::<InspectNetworkOptions>).await.unwrap();
            eprintln!(
                "left: {name} {:?} {:?}",
                net.labels,
                net.containers.map(|c| c.into_values().map(|e| e.name).collect::<Vec<_>>())
            );
        }
        assert!(left.is_empty(), "no network left behind: {left:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_configuration_errors_say_what_to_fix() {
    for (config, what) in [
        (
            DockerConfig {
                egress: Some(EgressConfig { proxy_port: Some(0), ..EgressConfig::default() }),
                ..DockerConfig::default()
            },
            "egress.proxy_port",
        ),
        (
            DockerConfig {
                egress: Some(EgressConfig::proxy(8089)),
                network: Some("bridge".into()),
                ..DockerConfig::default()
            },
            "network",
        ),
        (
            DockerConfig {
                egress: Some(EgressConfig {
                    subnet_pool: "10.0.0.0/8".into(),
                    subnet_prefix: 31,
                    ..EgressConfig::proxy(1)
                }),
                ..DockerConfig::default()
            },
            "egress subnet pool",
        ),
    ] {
        match DockerRuntime::connect(config).await {
            Err(paid_core::Error::InvalidInput { what: got, message }) => {
                assert_eq!(got, what, "{message}");
                assert!(!message.is_empty());
            }
            other => panic!("expected InvalidInput for {what}, got {other:?}"),
        }
    }
}

/// `DockerConfig::default()` has egress control on: with no proxy to
/// reach, a sandbox has no network at all (only loopback), so a listener
/// on every host address is out of its reach; `egress: None` (off) puts it
/// on the default bridge, where the same listener answers.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_config_gives_sandboxes_no_network() {
    let (port, _) = http_responder("host-listener");
    let interfaces = "ls /sys/class/net | tr '\\n' ' '";

    let prefix = unique_prefix("noegress");
    let runtime = runtime_with(DockerConfig { label_prefix: prefix.clone(), ..DockerConfig::default() }).await;
    let docker = runtime.client().clone();
    // The host's own address on Docker's default bridge.
    let gateway = runtime.uplink_gateway().await.unwrap().expect("the bridge has an IPv4 gateway");
    let target = vec![format!("{gateway}:{port}")];
    with_cleanup(&docker, &prefix, async {
        let worktree = tempfile::tempdir().unwrap();
        let sandbox = runtime.create(&suite::spec(&image(), worktree.path())).await.unwrap();
        assert_eq!(network_of(&runtime, &sandbox).await, "none");
        assert_eq!(sh(&runtime, &sandbox, interfaces).await.stdout_text(), "lo ");
        let env = sh(&runtime, &sandbox, "echo \"[$PAID_PROXY_URL]\"").await.stdout_text();
        assert_eq!(env, "[]\n", "no proxy, no proxy address");
        let got = probe(&runtime, &sandbox, &target).await;
        assert!(got[0].1.starts_with("FAIL"), "{got:?}");
        runtime.remove(&sandbox).await.unwrap();
    })
    .await;

    // The control: egress off, the same probe reaches the listener.
    let prefix = unique_prefix("egressoff");
    let off = DockerConfig { label_prefix: prefix.clone(), egress: None, ..DockerConfig::default() };
    let runtime = runtime_with(off).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let worktree = tempfile::tempdir().unwrap();
        let sandbox = runtime.create(&suite::spec(&image(), worktree.path())).await.unwrap();
        let got = probe(&runtime, &sandbox, &target).await;
        assert_eq!(got[0].1, "OPEN", "{got:?}");
        runtime.remove(&sandbox).await.unwrap();
    })
    .await;
}
