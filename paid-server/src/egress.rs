//! Egress control as the daemon sets it up: on by default, sandboxes with
//! no network at all whose only way out is the metering proxy, reached at
//! `http://127.0.0.1:3128` (a relay on the sandbox's own loopback, then the
//! runtime's forwarder), with no configuration.
//!
//! The forwarder runs on Docker's default bridge and reaches the proxy at
//! the host's bridge address (`host-gateway`). A proxy bound to loopback
//! (the `paid init` default, `127.0.0.1:8701`) is not reachable there, so
//! the daemon also listens on that address, on the same port, and nowhere
//! else: the proxy is never exposed beyond the host and its bridge.

use std::net::SocketAddr;

use paid_runtime_docker::{DockerConfig, DockerRuntime};
use tracing::{info, warn};

use crate::config::Config;
use crate::proxy::StartedProxy;

/// What `paid serve` and `paid doctor` say when egress control is off.
pub const EGRESS_OFF_WARNING: &str = "docker.egress = \"off\": sandboxes are on Docker's default network and can reach \
     the host, other containers and the internet; remove the setting to give each sandbox only the metering proxy";

/// The warning to print for `config`, if any: egress is off.
pub fn warning(config: &DockerConfig) -> Option<&'static str> {
    config.egress.is_none().then_some(EGRESS_OFF_WARNING)
}

/// `config.docker` with the proxy's port filled in: with egress on and no
/// `proxy_port` set, `proxy_port` (the port the metering proxy listens on;
/// none: no network).
pub fn docker_config(config: &Config, proxy_port: Option<u16>) -> DockerConfig {
    let mut docker = config.docker.clone();
    if let (Some(egress), Some(port)) = (docker.egress.as_mut(), proxy_port)
        && egress.proxy_port.is_none()
    {
        egress.proxy_port = Some(port);
    }
    docker
}

/// Connects to the Docker engine with `docker_config` (see
/// [`docker_config`]), and makes `proxy` reachable from the egress
/// forwarder (see the module docs).
pub(crate) async fn connect(
    docker_config: DockerConfig,
    proxy: Option<&mut StartedProxy>,
) -> anyhow::Result<DockerRuntime> {
    match &docker_config.egress {
        None => warn!("{EGRESS_OFF_WARNING}"),
        Some(e) if e.proxy_port.is_none() => {
            info!("egress control on; no metering proxy (no provider configured), so sandboxes get no network")
        }
        Some(e) => info!(
            proxy_host = %e.proxy_host, proxy_port = e.proxy_port.unwrap_or_default(),
            sandbox_port = e.forwarder_port,
            "egress control on: sandboxes reach only the metering proxy"
        ),
    }
    let egress = docker_config.egress.clone();
    let docker = DockerRuntime::connect(docker_config).await?;
    let (Some(p), Some(egress)) = (proxy, egress) else { return Ok(docker) };
    let addr = p.server.addr();
    if egress.proxy_host != "host-gateway" || !addr.ip().is_loopback() || egress.proxy_port != Some(addr.port()) {
        return Ok(docker);
    }
    let Some(gateway) = docker.uplink_gateway().await? else {
        anyhow::bail!(
            "the egress uplink network {:?} has no IPv4 gateway, so the forwarder cannot reach the metering proxy \
             on {addr}; set docker.egress.proxy_host and a proxy.bind it reaches",
            egress.uplink_network
        )
    };
    let also = SocketAddr::new(gateway, addr.port());
    let server = p.proxy.spawn(also).await.map_err(|e| {
        anyhow::anyhow!(
            "the metering proxy listens on {addr}, which the egress forwarder cannot reach, and listening on the \
             Docker bridge address {also} as well failed: {e}. Is the Docker engine on another host? Then set \
             proxy.bind to an address it reaches and docker.egress.proxy_host to that address"
        )
    })?;
    info!(addr = %also, "metering proxy also listening on the Docker bridge, for the egress forwarder");
    p.also.push(server);
    Ok(docker)
}
