//! Egress control against the real engine. A sandbox has no network at all
//! (only `lo`, no route). It reaches the metering proxy (a test listener
//! here) through its own loopback: its relay, then the forwarder's socket.
//! It reaches nothing else: not the host's bridge address, not another
//! sandbox, not the forwarder's other side. Every probe has a timeout, and
//! every target is on this machine: loopback, the Docker bridge, or our own
//! containers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;
use paid_core::testing::sandbox::{self as suite, run, sh};
use paid_core::{ExecEvent, ExecExit, ExecRequest, ResourceLimits, SandboxHandle, SandboxRuntime};
use paid_runtime_docker::{DockerConfig, DockerRuntime, EgressConfig, ReapReason, WarmPoolConfig};
use serde_json::Value;

use common::{image, managed_ids, managed_volumes, runtime_with, unique_prefix, with_cleanup};

/// A host-side HTTP responder on `0.0.0.0`: the stand-in for the metering
/// proxy. Answers each request with its path, and records the paths.
fn http_responder() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let record = record.clone();
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split_whitespace().nth(1).unwrap_or_default().to_string();
                record.lock().unwrap().push(path.clone());
                let reply =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{path}", path.len());
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    (port, seen)
}

/// What a sandbox sees of its network: its routes (`/proc/net/route`
/// without the header), its interfaces, and a TCP connect to each
/// `host:port` (all at once, 3 s each): `OPEN` or `FAIL <errno name>`.
async fn probe(runtime: &DockerRuntime, sandbox: &SandboxHandle, targets: &[String]) -> Value {
    let script = r#"
import errno, json, os, socket, sys, threading
out = {"interfaces": sorted(os.listdir("/sys/class/net")), "tcp": {}}
with open("/proc/net/route") as f:
    out["routes"] = [l for l in f.read().splitlines()[1:] if l.strip()]
def attempt(target):
    host, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, int(port)))
        out["tcp"][target] = "OPEN"
    except OSError as e:
        out["tcp"][target] = "FAIL " + errno.errorcode.get(e.errno or 0, type(e).__name__)
    finally:
        s.close()
threads = [threading.Thread(target=attempt, args=(t,)) for t in sys.argv[1:]]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(out))
"#;
    let mut argv = vec!["python3".to_string(), "-c".to_string(), script.to_string()];
    argv.extend(targets.iter().cloned());
    let out = run(runtime, sandbox, ExecRequest::argv(argv).with_timeout(Duration::from_secs(60))).await;
    assert_eq!(out.exit, ExecExit::Code(0), "probe: {}", out.stderr_text());
    serde_json::from_str(&out.stdout_text()).unwrap()
}

/// `GET $PAID_PROXY_URL/<path>` from inside the sandbox: the body, or the
/// error.
async fn get(runtime: &DockerRuntime, sandbox: &SandboxHandle, path: &str) -> Result<String, String> {
    let get = "import os, sys, urllib.request as u; \
               print(u.urlopen(os.environ['PAID_PROXY_URL'] + '/' + sys.argv[1], timeout=5).read().decode())";
    let req = ExecRequest::argv(["python3", "-c", get, path]).with_timeout(Duration::from_secs(30));
    let out = run(runtime, sandbox, req).await;
    match out.exit {
        ExecExit::Code(0) => Ok(out.stdout_text().trim_end().to_string()),
        _ => Err(out.stderr_text()),
    }
}

/// Retries [`get`] for up to 20 s.
async fn get_eventually(runtime: &DockerRuntime, sandbox: &SandboxHandle, path: &str) -> String {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match get(runtime, sandbox, path).await {
            Ok(body) => return body,
            Err(e) if Instant::now() > until => panic!("the proxy did not answer again: {e}"),
            // not an assertion: the poll interval of a deadline-bounded wait
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The forwarder's name, as the runtime derives it (FNV-1a of the target).
fn forwarder_name(prefix: &str, proxy_port: u16) -> String {
    let target = format!("host-gateway:{proxy_port}:3128");
    let hash = target.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{prefix}-egress-{:012x}", hash & 0xffff_ffff_ffff)
}

/// Two sandboxes, one from the warm pool and one cold, each with only `lo`
/// and no route, reach the proxy at `$PAID_PROXY_URL`, and each request
/// arrives as its own. Neither reaches the host's bridge address, nor the
/// other's loopback. The sandbox cannot remove the socket or stop its
/// relay. The relay survives an unreachable forwarder and comes back after
/// a restart. `shutdown` removes the forwarder and its volume.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_has_no_network_and_reaches_only_the_proxy() {
    let (proxy_port, seen) = http_responder();
    // Another host listener, on every host address: it must see nothing.
    let other = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let other_port = other.local_addr().unwrap().port();
    let base = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("egress");
    let config = DockerConfig {
        label_prefix: prefix.clone(),
        egress: Some(EgressConfig::proxy(proxy_port)),
        warm_pool: WarmPoolConfig { per_image: 1, root: Some(base.path().join("pool")), ..Default::default() },
        ..DockerConfig::default()
    };
    let runtime = runtime_with(config).await;
    let docker = runtime.client().clone();
    let docker0 = runtime.uplink_gateway().await.unwrap().expect("the bridge has an IPv4 gateway");
    with_cleanup(&docker, &prefix, async {
        // A forwarder an older version left under the same name (no socket
        // volume): it is replaced.
        let forwarder = forwarder_name(&prefix, proxy_port);
        let old = ContainerCreateBody {
            image: Some(image()),
            entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
            labels: Some(HashMap::from([
                (format!("{prefix}.managed"), "true".to_string()),
                (format!("{prefix}.role"), "forwarder".to_string()),
            ])),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&forwarder).build();
        docker.create_container(Some(options), old).await.unwrap();

        let worktree = |name: &str| {
            let dir = base.path().join("w").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };
        let spec_a = suite::spec(&image(), &worktree("a"));
        runtime.warm_up(&spec_a, Duration::from_secs(60)).await.unwrap();
        let a = runtime.create(&spec_a).await.unwrap();
        // Other limits: the pool does not serve it, so it is created cold.
        let limits = ResourceLimits { memory_bytes: 384 << 20, ..spec_a.limits };
        let b = runtime.create(&common::spec_with(&worktree("b"), limits)).await.unwrap();

        let volume = format!("{forwarder}-sock");
        for (sandbox, pooled) in [(&a, true), (&b, false)] {
            let inspect = docker.inspect_container(&sandbox.id, None::<InspectContainerOptions>).await.unwrap();
            let config = inspect.config.unwrap();
            assert_eq!(config.labels.unwrap().contains_key(&format!("{prefix}.pool.slot")), pooled);
            assert_eq!(config.user.as_deref(), Some("65534:65534"), "the relay runs as the init user");
            assert_eq!(config.entrypoint.unwrap()[..3], ["python3", "-u", "-c"], "the relay is the keepalive");
            assert_eq!(inspect.host_config.unwrap().network_mode.as_deref(), Some("none"));
            let mounts = inspect.mounts.unwrap();
            let socket = mounts.iter().find(|m| m.destination.as_deref() == Some("/run/paid-egress")).unwrap();
            assert_eq!((socket.name.as_deref(), socket.rw), (Some(volume.as_str()), Some(false)));
        }
        let inspect = docker.inspect_container(&forwarder, None::<InspectContainerOptions>).await.unwrap();
        let mounts = inspect.mounts.unwrap();
        assert!(mounts.iter().any(|m| m.name.as_deref() == Some(volume.as_str())), "replaced: {mounts:?}");
        let host_config = inspect.host_config.unwrap();
        assert_eq!(host_config.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host_config.readonly_rootfs, Some(true));
        assert_eq!(host_config.security_opt, Some(vec!["no-new-privileges".to_string()]));
        let uplink = inspect.network_settings.unwrap().networks.unwrap()["bridge"].ip_address.clone().unwrap();

        let env = sh(&runtime, &a, "echo $PAID_PROXY_URL $PAID_PROXY_HOST $PAID_PROXY_PORT").await.stdout_text();
        assert_eq!(env, "http://127.0.0.1:3128 127.0.0.1 3128\n");

        // B listens on its own loopback while A probes (one exec, held open:
        // the end of an exec ends what it started).
        // not an assertion: the Python listener holds its socket open while A probes; its exec is ended below
        let listen = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 8000)); s.listen(); \
                      print('listening', flush=True); time.sleep(120)";
        let mut held = runtime.exec(&b, ExecRequest::argv(["python3", "-c", listen])).await.unwrap();
        match held.next().await {
            Some(Ok(ExecEvent::Stdout(out))) => assert_eq!(out, "listening\n"),
            other => panic!("B's listener: {other:?}"),
        }
        let targets = [
            "127.0.0.1:3128".to_string(),      // A's relay: the proxy
            "127.0.0.1:8000".to_string(),      // B's listener, on B's loopback
            format!("{docker0}:{other_port}"), // the host's bridge address
            format!("{docker0}:{proxy_port}"), // ... the proxy itself, bypassing the relay
            format!("{uplink}:3128"),          // the forwarder's other side
        ];
        let seen_by_a = probe(&runtime, &a, &targets).await;
        drop(held);
        eprintln!("{seen_by_a:#}");
        assert_eq!(seen_by_a["routes"], serde_json::json!([]), "no route at all");
        assert_eq!(seen_by_a["interfaces"], serde_json::json!(["lo"]));
        let tcp = &seen_by_a["tcp"];
        assert_eq!(tcp[&targets[0]], "OPEN");
        assert_eq!(tcp[&targets[1]], "FAIL ECONNREFUSED", "another sandbox's loopback is not A's");
        for target in &targets[2..] {
            assert_eq!(tcp[target], "FAIL ENETUNREACH", "{target}: no route, so not even a packet");
        }

        // Each sandbox's request reaches the proxy, as its own.
        assert_eq!(get(&runtime, &a, "from-a").await, Ok("/from-a".to_string()));
        assert_eq!(get(&runtime, &b, "from-b").await, Ok("/from-b".to_string()));
        let paths = seen.lock().unwrap().clone();
        assert!(paths.contains(&"/from-a".to_string()) && paths.contains(&"/from-b".to_string()), "{paths:?}");
        other.set_nonblocking(true).unwrap();
        assert!(other.accept().is_err(), "nothing reached the other host listener");

        // The sandbox user cannot stop its relay or touch the socket, and
        // the clean-up after each exec spares the relay (no restart).
        let started = |inspect: bollard::models::ContainerInspectResponse| inspect.state.unwrap().started_at;
        let before = started(docker.inspect_container(&a.id, None::<InspectContainerOptions>).await.unwrap());
        let tamper = "kill -9 1 $(pgrep python3) 2>/dev/null; rm -f /run/paid-egress/proxy.sock; \
                      touch /run/paid-egress/x; ln -sf /tmp /run/paid-egress/proxy.sock; ls /run/paid-egress";
        assert_eq!(sh(&runtime, &a, tamper).await.stdout_text(), "proxy.sock\n");
        assert_eq!(get(&runtime, &a, "after-kill").await, Ok("/after-kill".to_string()));
        let after = started(docker.inspect_container(&a.id, None::<InspectContainerOptions>).await.unwrap());
        assert_eq!(before, after, "the sandbox was not restarted");

        // An unreachable forwarder fails the request, not the relay.
        let stop = StopContainerOptionsBuilder::new().t(0).build();
        docker.stop_container(&forwarder, Some(stop)).await.unwrap();
        assert!(get(&runtime, &a, "no-forwarder").await.is_err());
        assert!(runtime.is_running(&a).await.unwrap(), "the relay outlives a failed upstream connect");
        docker.start_container(&forwarder, None).await.unwrap();
        assert_eq!(get_eventually(&runtime, &a, "forwarder-back").await, "/forwarder-back");

        // A restart (the exec clean-up's last resort) brings the relay back.
        let restart = RestartContainerOptionsBuilder::new().t(0).build();
        docker.restart_container(&b.id, Some(restart)).await.unwrap();
        assert_eq!(get_eventually(&runtime, &b, "restarted").await, "/restarted");

        runtime.remove(&a).await.unwrap();
        runtime.remove(&b).await.unwrap();
        let report = runtime.shutdown().await;
        assert_eq!(report.errors, Vec::<String>::new());
        let mut reasons: Vec<ReapReason> = report.containers.iter().map(|r| r.reason).collect();
        reasons.dedup();
        assert_eq!(reasons, [ReapReason::Drained, ReapReason::UnusedForwarder], "the pool, then the forwarder");
        assert_eq!(managed_ids(&docker, &prefix).await, Vec::<String>::new());
        assert_eq!(managed_volumes(&docker, &prefix).await, Vec::<String>::new(), "the volume went with it");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conformance_suite_passes_with_egress() {
    let (proxy_port, _) = http_responder();
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
        let report = runtime.shutdown().await;
        assert_eq!(report.errors, Vec::<String>::new());
        assert_eq!(managed_ids(&docker, &prefix).await, Vec::<String>::new(), "{report:?}");
        assert_eq!(managed_volumes(&docker, &prefix).await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_configuration_errors_say_what_to_fix() {
    let egress = |egress: EgressConfig| DockerConfig { egress: Some(egress), ..DockerConfig::default() };
    for (config, what) in [
        (egress(EgressConfig { proxy_port: Some(0), ..EgressConfig::default() }), "egress.proxy_port"),
        (egress(EgressConfig { forwarder_port: 0, ..EgressConfig::proxy(8089) }), "egress.forwarder_port"),
        (DockerConfig { network: Some("bridge".into()), ..egress(EgressConfig::proxy(8089)) }, "network"),
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
/// reach, a sandbox has no network (only `lo`, no route) and no relay, so
/// neither a listener on the host's bridge address nor a proxy answers.
/// The control: `egress: None` (off) puts it on the default bridge, where
/// the same probe reaches that listener.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_config_gives_sandboxes_no_network() {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();

    let prefix = unique_prefix("noegress");
    let runtime = runtime_with(DockerConfig { label_prefix: prefix.clone(), ..DockerConfig::default() }).await;
    let docker = runtime.client().clone();
    let gateway = runtime.uplink_gateway().await.unwrap().expect("the bridge has an IPv4 gateway");
    let targets = [format!("{gateway}:{port}"), "127.0.0.1:3128".to_string()];
    with_cleanup(&docker, &prefix, async {
        let worktree = tempfile::tempdir().unwrap();
        let sandbox = runtime.create(&suite::spec(&image(), worktree.path())).await.unwrap();
        let inspect = docker.inspect_container(&sandbox.id, None::<InspectContainerOptions>).await.unwrap();
        assert_eq!(inspect.config.unwrap().entrypoint, Some(vec!["sleep".to_string(), "infinity".to_string()]));
        assert_eq!(inspect.host_config.unwrap().network_mode.as_deref(), Some("none"));
        assert_eq!(inspect.mounts.unwrap().len(), 1, "the worktree only: no socket volume");
        let env = sh(&runtime, &sandbox, "echo \"[$PAID_PROXY_URL]\"").await.stdout_text();
        assert_eq!(env, "[]\n", "no proxy, no proxy address");
        let seen = probe(&runtime, &sandbox, &targets).await;
        assert_eq!((&seen["routes"], &seen["interfaces"]), (&serde_json::json!([]), &serde_json::json!(["lo"])));
        assert_eq!(seen["tcp"][&targets[0]], "FAIL ENETUNREACH", "{seen}");
        assert_eq!(seen["tcp"][&targets[1]], "FAIL ECONNREFUSED", "no relay: {seen}");
        runtime.remove(&sandbox).await.unwrap();
        assert_eq!(managed_ids(&docker, &prefix).await, Vec::<String>::new(), "no forwarder either");
    })
    .await;

    let prefix = unique_prefix("egressoff");
    let off = DockerConfig { label_prefix: prefix.clone(), egress: None, ..DockerConfig::default() };
    let runtime = runtime_with(off).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let worktree = tempfile::tempdir().unwrap();
        let sandbox = runtime.create(&suite::spec(&image(), worktree.path())).await.unwrap();
        let seen = probe(&runtime, &sandbox, &targets).await;
        assert_ne!(seen["routes"], serde_json::json!([]), "{seen}");
        assert_eq!(seen["tcp"][&targets[0]], "OPEN", "{seen}");
        assert_eq!(seen["tcp"][&targets[1]], "FAIL ECONNREFUSED", "no relay: {seen}");
        runtime.remove(&sandbox).await.unwrap();
    })
    .await;
}
