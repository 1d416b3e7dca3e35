//! `paid doctor`'s proof of the sandbox path: a sandbox of each configured
//! image, created the way `paid serve` creates them, checks that it reaches
//! the metering proxy at `proxy.sandbox_url` (through its relay and the
//! egress forwarder; any HTTP answer to a bad token counts), that it has no
//! route at all and reaches nothing of this host, and that the configured
//! agents' programs are on its `PATH`.
//!
//! The proxy probed is the running daemon's when one listens on
//! `proxy.bind`; otherwise the doctor starts the configured proxy itself for
//! the duration of the check.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use paid_core::metrics::Metrics;
use paid_core::{
    Agent, ExecEvent, ExecExit, ExecRequest, Ids as _, ProjectId, RandomIds, ResourceLimits, RunId, SandboxRuntime,
    SandboxSpec, Store,
};
use paid_runtime_docker::DockerRuntime;
use serde::Deserialize;

use super::{Finding, f};
use crate::config::Config;
use crate::vault::Vault;

/// The probe script (python3, which the agent images carry).
const PROBE: &str = include_str!("probe.py");

/// What the probe printed.
#[derive(Debug, Deserialize)]
struct Probe {
    #[serde(default)]
    routes: Vec<String>,
    gateway: Option<String>,
    gateway_answers: bool,
    proxy_status: Option<u16>,
    proxy_error: Option<String>,
    reached: Vec<String>,
    missing: Vec<String>,
}

/// Runs the probe in a sandbox of every configured image;
/// `proxy_listening`: something answers on `proxy.bind` (the daemon).
pub(super) async fn checks(
    config: &Config,
    store: Option<Arc<dyn Store>>,
    vault: &Vault,
    proxy_listening: bool,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(warning) = crate::egress::warning(&config.docker) {
        out.push(f("egress", "warn", warning));
    }
    let want_proxy = !config.providers.is_empty();
    let daemon_proxy = want_proxy && proxy_listening;
    let mut started = None;
    if want_proxy && !daemon_proxy {
        progress("starting the metering proxy for the sandbox check".into());
        match store {
            Some(store) => match crate::proxy::start(config, store, vault, Arc::new(Metrics::default())).await {
                Ok(p) => started = p,
                Err(e) => {
                    out.push(f("sandbox", "fail", format!("cannot start the metering proxy: {}", crate::one_line(&e))))
                }
            },
            None => out.push(f("sandbox", "fail", "the store does not open, so the metering proxy cannot start")),
        }
    }
    // The running daemon's proxy, or the one started here.
    let port = match &started {
        Some(p) => Some(p.server.addr().port()),
        None => daemon_proxy.then(|| config.proxy.bind.port()),
    };
    let docker = crate::egress::docker_config(config, port);
    let proxy_port = docker.egress.as_ref().and_then(|e| e.proxy_port);
    let rt = match crate::egress::connect(docker, started.as_mut()).await {
        Ok(rt) => rt,
        Err(e) => {
            out.push(f("sandbox", "fail", crate::one_line(&e)));
            return out;
        }
    };
    // This host's own listeners a sandbox must not reach: the proxy and the
    // API on the host's bridge address.
    let mut targets = Vec::new();
    if let Ok(Some(gateway)) = rt.uplink_gateway().await {
        targets.extend(proxy_port.map(|port| format!("{gateway}:{port}")));
        targets.push(format!("{gateway}:{}", config.api.bind.port()));
    }
    let agents: BTreeMap<String, Arc<dyn Agent>> = match crate::stores::agents(config) {
        Ok(agents) => agents.into_iter().map(|a| (a.kind().to_string(), a)).collect(),
        Err(e) => {
            out.push(f("agents", "fail", crate::one_line(&e)));
            BTreeMap::new()
        }
    };
    let mut images: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for p in &config.projects {
        let exes = images.entry(p.image.as_str()).or_default();
        exes.extend(agents.get(&p.agent).map(|a| a.executables()).unwrap_or_default());
    }
    for (image, exes) in images {
        progress(format!("probing a sandbox of {image}"));
        match probe(&rt, config, image, &exes, &targets).await {
            Ok(p) => out.extend(judge(image, &p, want_proxy, &config.proxy.sandbox_url, &exes)),
            Err(e) => out.push(f("sandbox", "fail", format!("{image}: {e}"))),
        }
    }
    let _ = rt.shutdown().await;
    out
}

/// One sandbox of `image`: create, run the probe, remove.
async fn probe(
    rt: &DockerRuntime,
    config: &Config,
    image: &str,
    exes: &BTreeSet<String>,
    targets: &[String],
) -> Result<Probe, String> {
    let worktree = config.data_dir.join(format!("doctor-{}", RandomIds.hex(6)));
    std::fs::create_dir_all(&worktree).map_err(|e| format!("creating {}: {e}", worktree.display()))?;
    let spec = SandboxSpec {
        run_id: RunId(uuid::Uuid::now_v7()),
        project_id: ProjectId(uuid::Uuid::nil()),
        image: image.to_string(),
        worktree: worktree.clone(),
        mount_at: SandboxSpec::DEFAULT_MOUNT.to_string(),
        env: BTreeMap::from([
            ("PAID_DOCTOR_PROXY_URL".to_string(), config.proxy.sandbox_url.clone()),
            ("PAID_DOCTOR_EXES".to_string(), exes.iter().cloned().collect::<Vec<_>>().join(" ")),
        ]),
        limits: ResourceLimits::default(),
    };
    let result = async {
        let sandbox = rt.create(&spec).await.map_err(|e| e.to_string())?;
        let ran = run_probe(rt, &sandbox, targets).await;
        let _ = rt.remove(&sandbox).await;
        ran
    }
    .await;
    let _ = std::fs::remove_dir_all(&worktree);
    result
}

async fn run_probe(
    rt: &DockerRuntime,
    sandbox: &paid_core::SandboxHandle,
    targets: &[String],
) -> Result<Probe, String> {
    let mut argv = vec!["python3".to_string(), "-c".to_string(), PROBE.to_string()];
    argv.extend(targets.iter().cloned());
    let mut req = ExecRequest::argv(argv);
    req.timeout = Some(Duration::from_secs(60));
    let mut events = rt.exec(sandbox, req).await.map_err(|e| e.to_string())?;
    let (mut stdout, mut stderr, mut exit) = (Vec::new(), Vec::new(), None);
    while let Some(event) = events.next().await {
        match event.map_err(|e| e.to_string())? {
            ExecEvent::Stdout(b) => stdout.extend_from_slice(&b),
            ExecEvent::Stderr(b) => stderr.extend_from_slice(&b),
            ExecEvent::Exit(e) => exit = Some(e),
        }
    }
    let text = String::from_utf8_lossy(&stdout);
    match (exit, text.lines().last().map(serde_json::from_str::<Probe>)) {
        (Some(ExecExit::Code(0)), Some(Ok(p))) => Ok(p),
        (Some(ExecExit::Code(127)), _) => {
            Err("the image has no python3, which the probe (and the egress relay) need".into())
        }
        (exit, _) => Err(format!("the probe failed ({exit:?}): {}", String::from_utf8_lossy(&stderr).trim())),
    }
}

/// The findings of one image's probe.
fn judge(image: &str, p: &Probe, want_proxy: bool, url: &str, exes: &BTreeSet<String>) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut escapes = Vec::new();
    match (&p.gateway, p.gateway_answers) {
        (Some(gateway), true) => escapes.push(format!("it has a default route via {gateway}, which answers")),
        (Some(gateway), false) => escapes.push(format!("it has a default route via {gateway}")),
        (None, _) if !p.routes.is_empty() => escapes.push(format!("it has routes ({})", p.routes.join("; "))),
        (None, _) => {}
    }
    if !p.reached.is_empty() {
        escapes.push(format!("it reached {} on this host", p.reached.join(", ")));
    }
    if escapes.is_empty() {
        out.push(f(
            "sandbox egress",
            "ok",
            format!("{image}: no network (no route at all); reached nothing of this host"),
        ));
    } else {
        out.push(f(
            "sandbox egress",
            "fail",
            format!("{image}: {}; a compromised agent can reach more than the metering proxy", escapes.join("; ")),
        ));
    }
    match (want_proxy, p.proxy_status, &p.proxy_error) {
        (false, ..) => out.push(f("sandbox proxy", "ok", format!("{image}: no provider configured, no proxy needed"))),
        (true, Some(status), _) => {
            out.push(f("sandbox proxy", "ok", format!("{image}: reached the metering proxy at {url} (HTTP {status})")))
        }
        (true, None, error) => out.push(f(
            "sandbox proxy",
            "fail",
            format!("{image}: cannot reach the metering proxy at {url}: {}", error.as_deref().unwrap_or("no answer")),
        )),
    }
    for exe in exes {
        if p.missing.contains(exe) {
            out.push(f(
                "agent",
                "fail",
                format!("{image} has no `{exe}` on its PATH; build an image with the agent's CLI"),
            ));
        } else {
            out.push(f("agent", "ok", format!("{image} has `{exe}`")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe's result; `gateway`: a default route via 10.213.0.1, and
    /// whether that answers.
    fn probe(gateway: Option<bool>, status: Option<u16>, reached: &[&str], missing: &[&str]) -> Probe {
        Probe {
            routes: gateway.map(|_| vec!["0.0.0.0 via 10.213.0.1 dev eth0".to_string()]).unwrap_or_default(),
            gateway: gateway.map(|_| "10.213.0.1".to_string()),
            gateway_answers: gateway == Some(true),
            proxy_status: status,
            proxy_error: status.is_none().then(|| "timed out".to_string()),
            reached: reached.iter().map(|s| s.to_string()).collect(),
            missing: missing.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn statuses(findings: &[Finding]) -> Vec<(String, &'static str)> {
        findings.iter().map(|f| (f.check.clone(), f.status)).collect()
    }

    #[test]
    fn a_confined_sandbox_with_its_agent_passes() {
        let exes = BTreeSet::from(["claude".to_string()]);
        let got = judge("img", &probe(None, Some(401), &[], &[]), true, "http://127.0.0.1:3128", &exes);
        assert_eq!(
            statuses(&got),
            [("sandbox egress".into(), "ok"), ("sandbox proxy".into(), "ok"), ("agent".into(), "ok")]
        );
        assert!(got[0].message.contains("no route at all"), "{got:?}");
    }

    #[test]
    fn escapes_an_unreachable_proxy_and_a_missing_agent_fail() {
        let exes = BTreeSet::from(["claude".to_string()]);
        let got = judge("img", &probe(Some(true), None, &["172.17.0.1:8701"], &["claude"]), true, "http://x", &exes);
        assert_eq!(
            statuses(&got),
            [("sandbox egress".into(), "fail"), ("sandbox proxy".into(), "fail"), ("agent".into(), "fail")]
        );
        assert!(
            got[0].message.contains("route via 10.213.0.1, which answers")
                && got[0].message.contains("172.17.0.1:8701"),
            "{got:?}"
        );
        // A reached host port alone fails too, and so does a default route
        // that leads nowhere, or any route at all.
        let got = judge("img", &probe(None, Some(401), &["172.17.0.1:8700"], &[]), true, "http://x", &exes);
        assert_eq!(got[0].status, "fail");
        let got = judge("img", &probe(Some(false), Some(401), &[], &[]), true, "http://x", &exes);
        assert_eq!(got[0].status, "fail", "{got:?}");
        assert!(got[0].message.contains("default route via 10.213.0.1"), "{got:?}");
        let routes = Probe { routes: vec!["10.0.0.0 via 0.0.0.0 dev eth0".into()], ..probe(None, Some(401), &[], &[]) };
        assert_eq!(judge("img", &routes, true, "http://x", &BTreeSet::new()).first().map(|f| f.status), Some("fail"));
    }
}
