//! Egress control: one internal network per sandbox, and a forwarder per
//! engine that relays one port to the metering proxy.
//!
//! # Why a network per sandbox
//!
//! On the engine (tested on 20.10 with iptables), a shared `Internal: true`
//! bridge network is not enough:
//! - containers on it still get a default route via the bridge's host-side
//!   address, and traffic to the host itself goes through the host's
//!   `INPUT` chain, which Docker does not filter: every host port listening
//!   on `0.0.0.0` answers, on every host address;
//! - `com.docker.network.bridge.enable_icc=false` drops *all* traffic
//!   between containers of the bridge, so it would cut sandboxes off from
//!   the forwarder as well as from each other.
//!
//! So each sandbox gets its own bridge network, with:
//! - `Internal: true`: the engine drops anything routed off the bridge;
//! - `com.docker.network.bridge.inhibit_ipv4=true`: the host takes no
//!   address on the bridge, so the sandbox's default gateway does not exist
//!   and no host port is reachable;
//! - a small subnet (`/28` by default) cut from a configured pool, so
//!   thousands of networks fit without exhausting the engine's default
//!   address pools (31 networks);
//! - just two members, the sandbox and the forwarder: other sandboxes are
//!   on other networks, with no route between them.
//!
//! Network names and the forwarder's address are chosen here, so a
//! sandbox's environment (`PAID_PROXY_URL`) is known before it is created.
//! The forwarder also answers to one alias (`paid-proxy`) on every network,
//! so a single URL works in every sandbox.
//! The embedded DNS server of an internal network resolves the names of its
//! members only; it does not forward queries out (checked by the tests).
//!
//! # The forwarder
//!
//! One container per engine (and label prefix and proxy target), named so
//! that workers sharing the engine share it. It runs a short asyncio relay
//! from the sandbox image's `python3`, hardened like a sandbox (non-root, no
//! capabilities, read-only root, memory/CPU/PID limits, IP forwarding off)
//! and restarted by the engine if it dies. It joins the uplink network
//! (default `bridge`) to reach the proxy, and each sandbox network at the
//! subnet's second address.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkDisconnectRequest, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, InspectContainerOptions};
use paid_core::{Ids, RandomIds};

use crate::config::{DockerConfig, EgressConfig};
use crate::container::{NO_NEW_PRIVILEGES, SandboxUser, role};
use crate::endpoint::Endpoint;
use crate::error::{DockerError, status_of};

/// Environment variable with the proxy's URL, as a sandbox reaches it.
pub const PROXY_URL_ENV: &str = "PAID_PROXY_URL";
/// Environment variable with the proxy's address (no port).
pub const PROXY_HOST_ENV: &str = "PAID_PROXY_HOST";
/// Environment variable with the proxy's port.
pub const PROXY_PORT_ENV: &str = "PAID_PROXY_PORT";

/// The host name the forwarder resolves to the proxy host when that is
/// `host-gateway`.
const UPSTREAM_ALIAS: &str = "paid-proxy-upstream";
/// How many subnets a create tries before giving up.
const SUBNET_ATTEMPTS: usize = 32;

/// The relay the forwarder runs: accept on `PAID_FWD_LISTEN`, connect to
/// `PAID_FWD_HOST:PAID_FWD_PORT`, copy both ways with half-close.
pub(crate) const FORWARDER_SCRIPT: &str = r#"
import asyncio, os, sys
LISTEN = int(os.environ["PAID_FWD_LISTEN"])
HOST = os.environ["PAID_FWD_HOST"]
PORT = int(os.environ["PAID_FWD_PORT"])

async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except Exception:
        pass

async def handle(client_r, client_w):
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection(HOST, PORT), 10)
    except Exception as e:
        print("paid-forwarder: upstream %s:%d unreachable: %s" % (HOST, PORT, e), file=sys.stderr, flush=True)
        client_w.close()
        return
    try:
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
    finally:
        for w in (up_w, client_w):
            try:
                w.close()
            except Exception:
                pass

async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", LISTEN, backlog=1024)
    print("paid-forwarder: :%d -> %s:%d" % (LISTEN, HOST, PORT), flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"#;

/// An IPv4 subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// `a.b.c.d/n`.
    pub(crate) fn cidr(self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }

    /// The first host address, the (never assigned) gateway of the network.
    pub(crate) fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// The second host address: the forwarder.
    pub(crate) fn forwarder(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 2)
    }
}

/// The range sandbox subnets are cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubnetPool {
    base: u32,
    prefix: u8,
    subnet_prefix: u8,
}

impl SubnetPool {
    /// Parses `pool` (a CIDR) into subnets of `/subnet_prefix`.
    pub(crate) fn parse(pool: &str, subnet_prefix: u8) -> Result<Self, DockerError> {
        let invalid = |message: String| DockerError::Invalid { what: "egress subnet pool", message };
        let (addr, prefix) = pool.split_once('/').ok_or_else(|| invalid(format!("{pool:?} is not a CIDR")))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid(format!("{pool:?}: {addr:?} is not an IPv4 address")))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=29).contains(p))
            .ok_or_else(|| invalid(format!("{pool:?}: the prefix length must be 8 to 29")))?;
        if !(prefix..=29).contains(&subnet_prefix) {
            return Err(invalid(format!(
                "subnet prefix /{subnet_prefix} must be between the pool's /{prefix} and /29 \
                 (a sandbox network needs room for a gateway, the forwarder and the sandbox)"
            )));
        }
        let mask = u32::MAX << (32 - prefix);
        let base = u32::from(addr);
        if base & !mask != 0 {
            return Err(invalid(format!("{pool:?} has host bits set; use {}/{prefix}", Ipv4Addr::from(base & mask))));
        }
        Ok(Self { base, prefix, subnet_prefix })
    }

    /// How many subnets the pool holds.
    pub(crate) fn len(self) -> u32 {
        1 << (self.subnet_prefix - self.prefix)
    }

    /// Subnet number `index` (modulo [`len`](Self::len)).
    pub(crate) fn subnet(self, index: u32) -> Subnet {
        let size = 1u32 << (32 - self.subnet_prefix);
        Subnet { base: self.base + (index % self.len()) * size, prefix: self.subnet_prefix }
    }
}

/// The environment that tells a sandbox where the proxy is.
pub(crate) fn proxy_env(forwarder: Ipv4Addr, port: u16) -> BTreeMap<String, String> {
    BTreeMap::from([
        (PROXY_URL_ENV.to_string(), format!("http://{forwarder}:{port}")),
        (PROXY_HOST_ENV.to_string(), forwarder.to_string()),
        (PROXY_PORT_ENV.to_string(), port.to_string()),
    ])
}

/// The body of `POST /networks/create` for a sandbox network.
pub(crate) fn network_body(config: &DockerConfig, name: &str, subnet: Subnet) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".to_string()),
        internal: Some(true),
        attachable: Some(false),
        enable_ipv6: Some(false),
        ipam: Some(Ipam {
            driver: Some("default".to_string()),
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.cidr()),
                gateway: Some(subnet.gateway().to_string()),
                ..Default::default()
            }]),
            options: None,
        }),
        options: Some(HashMap::from([
            ("com.docker.network.bridge.inhibit_ipv4".to_string(), "true".to_string()),
            ("com.docker.network.bridge.enable_icc".to_string(), "true".to_string()),
            ("com.docker.network.bridge.enable_ip_masquerade".to_string(), "false".to_string()),
        ])),
        labels: Some(HashMap::from([
            (config.managed_label(), "true".to_string()),
            (config.label("role"), role::SANDBOX_NET.to_string()),
        ])),
        ..Default::default()
    }
}

/// The forwarder's container name on one engine: stable per label prefix
/// and proxy target, so workers sharing the engine share it.
pub(crate) fn forwarder_name(config: &DockerConfig, egress: &EgressConfig) -> String {
    let target = format!("{}:{}:{}", egress.proxy_host, egress.proxy_port.unwrap_or(0), egress.forwarder_port);
    // FNV-1a: stable across processes and versions, unlike `DefaultHasher`.
    let hash = target.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{}-egress-{:012x}", config.label_prefix, hash & 0xffff_ffff_ffff)
}

/// The body that creates the forwarder.
pub(crate) fn forwarder_body(config: &DockerConfig, egress: &EgressConfig) -> Result<ContainerCreateBody, DockerError> {
    let user = SandboxUser::parse(&config.user)?;
    let (host, extra_hosts) = if egress.proxy_host == "host-gateway" {
        (UPSTREAM_ALIAS.to_string(), Some(vec![format!("{UPSTREAM_ALIAS}:host-gateway")]))
    } else {
        (egress.proxy_host.clone(), None)
    };
    Ok(ContainerCreateBody {
        image: Some(egress.forwarder_image.clone()),
        user: Some(format!("{}:{}", user.uid, user.gid)),
        entrypoint: Some(vec!["python3".to_string(), "-u".to_string(), "-c".to_string(), FORWARDER_SCRIPT.to_string()]),
        cmd: None,
        env: Some(vec![
            format!("PAID_FWD_LISTEN={}", egress.forwarder_port),
            format!("PAID_FWD_HOST={host}"),
            format!("PAID_FWD_PORT={}", egress.proxy_port.unwrap_or(0)),
        ]),
        working_dir: Some("/".to_string()),
        labels: Some(HashMap::from([
            (config.managed_label(), "true".to_string()),
            (config.label("role"), role::FORWARDER.to_string()),
            (config.label("forwarder.target"), format!("{}:{}", egress.proxy_host, egress.proxy_port.unwrap_or(0))),
        ])),
        host_config: Some(HostConfig {
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec![NO_NEW_PRIVILEGES.to_string()]),
            readonly_rootfs: Some(true),
            privileged: Some(false),
            memory: Some(64 << 20),
            memory_swap: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            pids_limit: Some(64),
            init: Some(true),
            network_mode: Some(egress.uplink_network.clone()),
            extra_hosts,
            sysctls: Some(HashMap::from([("net.ipv4.ip_forward".to_string(), "0".to_string())])),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A sandbox network, created and joined by the forwarder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxNet {
    /// The network's name.
    pub(crate) name: String,
    /// Where the sandbox finds the proxy.
    pub(crate) env: BTreeMap<String, String>,
}

/// Egress on one runtime: the parsed configuration, and the spare
/// networks kept ready per endpoint.
#[derive(Debug)]
pub(crate) struct Egress {
    /// The runtime's configuration (labels, user, build hint).
    runtime: DockerConfig,
    /// The egress part.
    pub(crate) config: EgressConfig,
    pool: SubnetPool,
    /// This runtime instance, the `<prefix>.spare` label of its spares.
    instance: String,
    spares: Mutex<Spares>,
}

/// Spare networks per endpoint index.
#[derive(Debug, Default)]
struct Spares {
    ready: HashMap<usize, VecDeque<Spare>>,
    filling: HashMap<usize, usize>,
    closed: bool,
}

/// A spare network and when it was made.
#[derive(Debug, Clone)]
pub(crate) struct Spare {
    pub(crate) net: SandboxNet,
    pub(crate) endpoint: usize,
    born: Instant,
}

impl Egress {
    /// Checks and keeps `runtime.egress`; `None` when egress is off.
    /// `instance` names this runtime on its spare networks.
    pub(crate) fn from_config(runtime: &DockerConfig, instance: &str) -> Result<Option<Self>, DockerError> {
        let Some(config) = &runtime.egress else { return Ok(None) };
        if runtime.network.is_some() {
            return Err(DockerError::Invalid {
                what: "network",
                message: "`network` and `egress` exclude each other: with egress every sandbox gets its own network"
                    .to_string(),
            });
        }
        Self::check(config)?;
        Ok(Some(Self {
            runtime: runtime.clone(),
            config: config.clone(),
            pool: SubnetPool::parse(&config.subnet_pool, config.subnet_prefix)?,
            instance: instance.to_string(),
            spares: Mutex::default(),
        }))
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Spares> {
        self.spares.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a spare may wait before it is replaced (the warm pool's
    /// `max_idle_secs`, below the reaper's idle threshold).
    fn spare_max_age(&self) -> Duration {
        Duration::from_secs(self.runtime.warm_pool.max_idle_secs)
    }

    /// A ready spare network of endpoint `endpoint`, if there is one.
    pub(crate) fn take_spare(&self, endpoint: usize) -> Option<SandboxNet> {
        let max_age = self.spare_max_age();
        let mut spares = self.spares();
        spares.closed = false;
        // Too old ones stay for the reaper to replace.
        let queue = spares.ready.entry(endpoint).or_default();
        let fresh = queue.iter().position(|s| s.born.elapsed() <= max_age)?;
        queue.remove(fresh).map(|s| s.net)
    }

    /// Reserves the creates that bring endpoint `endpoint` back to
    /// `spare_networks`; returns how many.
    pub(crate) fn reserve_spares(&self, endpoint: usize) -> usize {
        let mut spares = self.spares();
        if spares.closed || self.isolated() {
            return 0;
        }
        let ready = spares.ready.get(&endpoint).map_or(0, VecDeque::len);
        let filling = spares.filling.entry(endpoint).or_default();
        let deficit = self.config.spare_networks.saturating_sub(ready + *filling);
        *filling += deficit;
        deficit
    }

    /// Records the end of a reserved create. Returns the network back when
    /// the spares were drained meanwhile: the caller removes it, then calls
    /// [`release_spare`](Self::release_spare), so a drain waits for that too.
    pub(crate) fn finish_spare(&self, endpoint: usize, created: Option<SandboxNet>) -> Option<SandboxNet> {
        let mut spares = self.spares();
        match created {
            Some(net) if spares.closed => Some(net),
            created => {
                let filling = spares.filling.entry(endpoint).or_default();
                *filling = filling.saturating_sub(1);
                if let Some(net) = created {
                    spares.ready.entry(endpoint).or_default().push_back(Spare { net, endpoint, born: Instant::now() });
                }
                None
            }
        }
    }

    /// Ends a create whose network [`finish_spare`](Self::finish_spare)
    /// handed back, once it is removed.
    pub(crate) fn release_spare(&self, endpoint: usize) {
        let mut spares = self.spares();
        let filling = spares.filling.entry(endpoint).or_default();
        *filling = filling.saturating_sub(1);
    }

    /// Whether `network` is one of this runtime's ready spares.
    pub(crate) fn holds_spare(&self, network: &str) -> bool {
        self.spares().ready.values().flatten().any(|s| s.net.name == network)
    }

    /// Takes out the spares older than the warm pool's `max_idle_secs`.
    pub(crate) fn take_stale_spares(&self) -> Vec<Spare> {
        let max_age = self.spare_max_age();
        let mut stale = Vec::new();
        for queue in self.spares().ready.values_mut() {
            let (old, fresh): (Vec<_>, Vec<_>) = queue.drain(..).partition(|s| s.born.elapsed() > max_age);
            *queue = fresh.into();
            stale.extend(old);
        }
        stale
    }

    /// Stops refilling and takes every spare out; also says how many
    /// creates are still running.
    pub(crate) fn drain_spares(&self) -> (Vec<Spare>, usize) {
        let mut spares = self.spares();
        spares.closed = true;
        let filling = spares.filling.values().sum();
        (spares.ready.values_mut().flat_map(|q| q.drain(..)).collect(), filling)
    }

    /// Whether sandboxes are cut off entirely: egress is on but there is
    /// no proxy to reach, so they get Docker's `none` network and no
    /// forwarder runs.
    pub(crate) fn isolated(&self) -> bool {
        self.config.proxy_port.is_none()
    }

    fn check(config: &EgressConfig) -> Result<(), DockerError> {
        if config.proxy_port == Some(0) {
            return Err(DockerError::Invalid {
                what: "egress.proxy_port",
                message: "give the port the metering proxy listens on (or leave it unset: no network)".to_string(),
            });
        }
        if config.forwarder_port == 0 {
            return Err(DockerError::Invalid { what: "egress.forwarder_port", message: "0 is not a port".to_string() });
        }
        Ok(())
    }

    /// The forwarder of `endpoint`, created and started when missing.
    pub(crate) async fn ensure_forwarder(&self, endpoint: &Endpoint) -> Result<String, DockerError> {
        let config = &self.runtime;
        let mut known = endpoint.forwarder.lock().await;
        if let Some(id) = known.as_ref() {
            return Ok(id.clone());
        }
        let docker = &endpoint.docker;
        let name = forwarder_name(config, &self.config);
        let id = match docker.inspect_container(&name, None::<InspectContainerOptions>).await {
            Ok(inspect) => {
                let id = inspect.id.unwrap_or_else(|| name.clone());
                if inspect.state.and_then(|s| s.running) != Some(true) {
                    docker.start_container(&id, None).await.map_err(endpoint.api("start forwarder"))?;
                }
                id
            }
            Err(e) if status_of(&e) == Some(404) => {
                let options = CreateContainerOptionsBuilder::new().name(&name).build();
                let body = forwarder_body(config, &self.config)?;
                let id = match docker.create_container(Some(options), body).await {
                    Ok(created) => created.id,
                    // Another worker created it first.
                    Err(e) if status_of(&e) == Some(409) => name.clone(),
                    Err(e) if status_of(&e) == Some(404) => {
                        return Err(DockerError::ImageMissing {
                            image: self.config.forwarder_image.clone(),
                            hint: config.image_build_hint.clone(),
                        });
                    }
                    Err(e) => return Err(endpoint.api("create forwarder")(e)),
                };
                match docker.start_container(&id, None).await {
                    Ok(()) => {}
                    Err(e) if status_of(&e) == Some(304) => {}
                    Err(e) => return Err(endpoint.api("start forwarder")(e)),
                }
                tracing::info!(endpoint = %endpoint.name, forwarder = %name, "egress forwarder started");
                id
            }
            Err(e) => return Err(endpoint.api("inspect forwarder")(e)),
        };
        *known = Some(id.clone());
        Ok(id)
    }

    /// Creates a sandbox network on `endpoint` and connects the forwarder to
    /// it at the subnet's second address. Subnets already taken (by this or
    /// another worker) are skipped.
    pub(crate) async fn create_network(&self, endpoint: &Endpoint, spare: bool) -> Result<SandboxNet, DockerError> {
        let config = &self.runtime;
        let forwarder = self.ensure_forwarder(endpoint).await?;
        let ids = RandomIds;
        let start = u32::from_str_radix(&ids.hex(4), 16).unwrap_or(0);
        let mut last = None;
        for attempt in 0..SUBNET_ATTEMPTS {
            // Step by a large odd number: consecutive attempts land far apart.
            let subnet = self.pool.subnet(start.wrapping_add(attempt as u32 * 2_654_435_761));
            let name = format!("{}-net-{}", config.label_prefix, ids.hex(6));
            let mut body = network_body(config, &name, subnet);
            if spare && let Some(labels) = body.labels.as_mut() {
                labels.insert(config.label("spare"), self.instance.clone());
            }
            match endpoint.docker.create_network(body).await {
                Ok(_) => {}
                Err(e) if overlaps(&e) => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(endpoint.api("create sandbox network")(e)),
            }
            if let Err(e) = self.connect(endpoint, &forwarder, &name, subnet).await {
                let _ = endpoint.docker.remove_network(&name).await;
                return Err(e);
            }
            return Ok(SandboxNet { name, env: proxy_env(subnet.forwarder(), self.config.forwarder_port) });
        }
        Err(DockerError::Egress {
            message: format!(
                "no free subnet in {} after {SUBNET_ATTEMPTS} attempts ({}); widen egress.subnet_pool",
                self.config.subnet_pool,
                last.map(|e| e.to_string()).unwrap_or_default()
            ),
        })
    }

    /// Connects the forwarder to `network`; re-creates a forwarder that went
    /// missing once.
    async fn connect(
        &self,
        endpoint: &Endpoint,
        forwarder: &str,
        network: &str,
        subnet: Subnet,
    ) -> Result<(), DockerError> {
        let request = |container: &str| NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                ipam_config: Some(EndpointIpamConfig {
                    ipv4_address: Some(subnet.forwarder().to_string()),
                    ..Default::default()
                }),
                aliases: (!self.config.proxy_alias.is_empty()).then(|| vec![self.config.proxy_alias.clone()]),
                ..Default::default()
            }),
        };
        match endpoint.docker.connect_network(network, request(forwarder)).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => {
                tracing::warn!(endpoint = %endpoint.name, "the egress forwarder is gone; re-creating it");
                *endpoint.forwarder.lock().await = None;
                let forwarder = self.ensure_forwarder(endpoint).await?;
                endpoint
                    .docker
                    .connect_network(network, request(&forwarder))
                    .await
                    .map_err(endpoint.api("connect forwarder"))
            }
            Err(e) => Err(endpoint.api("connect forwarder")(e)),
        }
    }

    /// Disconnects the forwarder from `network` and removes it. Missing
    /// networks are fine.
    pub(crate) async fn remove_network(&self, endpoint: &Endpoint, network: &str) -> Result<(), DockerError> {
        let forwarder = endpoint.forwarder.lock().await.clone();
        if let Some(forwarder) = forwarder {
            let request = NetworkDisconnectRequest { container: forwarder, force: Some(true) };
            match endpoint.docker.disconnect_network(network, request).await {
                Ok(()) => {}
                Err(e) if matches!(status_of(&e), Some(404 | 500)) => {
                    tracing::debug!(network, error = %e, "forwarder not on the network");
                }
                Err(e) => return Err(endpoint.api("disconnect forwarder")(e)),
            }
        }
        remove_network(endpoint, network).await
    }
}

/// Removes `network`, disconnecting whatever is still on it first (only
/// the forwarder should be). Missing networks are fine.
pub(crate) async fn remove_network(endpoint: &Endpoint, network: &str) -> Result<(), DockerError> {
    match endpoint.docker.remove_network(network).await {
        Ok(()) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        Err(e) if status_of(&e) == Some(403) || e.to_string().contains("active endpoints") => {
            let inspect = endpoint
                .docker
                .inspect_network(network, None::<bollard::query_parameters::InspectNetworkOptions>)
                .await
                .map_err(endpoint.api("inspect network"))?;
            for container in inspect.containers.unwrap_or_default().into_keys() {
                let request = NetworkDisconnectRequest { container, force: Some(true) };
                let _ = endpoint.docker.disconnect_network(network, request).await;
            }
            match endpoint.docker.remove_network(network).await {
                Ok(()) => Ok(()),
                Err(e) if status_of(&e) == Some(404) => Ok(()),
                Err(e) => Err(endpoint.api("remove network")(e)),
            }
        }
        Err(e) => Err(endpoint.api("remove network")(e)),
    }
}

/// Whether a network create failed because the subnet is taken.
fn overlaps(err: &bollard::errors::Error) -> bool {
    let text = err.to_string();
    matches!(status_of(err), Some(400 | 403 | 409 | 500)) && (text.contains("overlaps") || text.contains("in use"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_cut_from_the_pool() {
        let pool = SubnetPool::parse("10.213.0.0/16", 28).unwrap();
        assert_eq!(pool.len(), 4096);
        let first = pool.subnet(0);
        assert_eq!(
            (first.cidr(), first.gateway(), first.forwarder()),
            ("10.213.0.0/28".to_string(), Ipv4Addr::new(10, 213, 0, 1), Ipv4Addr::new(10, 213, 0, 2))
        );
        assert_eq!(pool.subnet(1).cidr(), "10.213.0.16/28");
        assert_eq!(pool.subnet(4095).cidr(), "10.213.255.240/28");
        assert_eq!(pool.subnet(4096), first, "indices wrap around");
        let pool = SubnetPool::parse("192.168.64.0/24", 29).unwrap();
        assert_eq!((pool.len(), pool.subnet(3).cidr()), (32, "192.168.64.24/29".to_string()));
    }

    #[test]
    fn nonsense_pools_are_refused() {
        for (pool, prefix) in [
            ("10.213.0.0", 28),
            ("10.213.0.0/33", 28),
            ("10.213.0.0/16", 30),
            ("10.213.0.0/16", 12),
            ("10.213.0.1/16", 28),
            ("ten/16", 28),
        ] {
            let err = SubnetPool::parse(pool, prefix).unwrap_err();
            assert!(matches!(err, DockerError::Invalid { what: "egress subnet pool", .. }), "{pool} /{prefix}: {err}");
        }
    }

    #[test]
    fn the_network_is_internal_with_no_host_address() {
        let config = DockerConfig::default();
        let subnet = SubnetPool::parse("10.213.0.0/16", 28).unwrap().subnet(2);
        let body = network_body(&config, "paid-net-abc", subnet);
        pretty_assertions::assert_eq!(
            body,
            NetworkCreateRequest {
                name: "paid-net-abc".into(),
                driver: Some("bridge".into()),
                internal: Some(true),
                attachable: Some(false),
                enable_ipv6: Some(false),
                ipam: Some(Ipam {
                    driver: Some("default".into()),
                    config: Some(vec![IpamConfig {
                        subnet: Some("10.213.0.32/28".into()),
                        gateway: Some("10.213.0.33".into()),
                        ..Default::default()
                    }]),
                    options: None,
                }),
                options: Some(HashMap::from([
                    ("com.docker.network.bridge.inhibit_ipv4".into(), "true".into()),
                    ("com.docker.network.bridge.enable_icc".into(), "true".into()),
                    ("com.docker.network.bridge.enable_ip_masquerade".into(), "false".into()),
                ])),
                labels: Some(HashMap::from([
                    ("paid.managed".into(), "true".into()),
                    ("paid.role".into(), "sandbox-net".into()),
                ])),
                ..Default::default()
            }
        );
        assert_eq!(
            proxy_env(subnet.forwarder(), 3128),
            BTreeMap::from([
                ("PAID_PROXY_URL".to_string(), "http://10.213.0.34:3128".to_string()),
                ("PAID_PROXY_HOST".to_string(), "10.213.0.34".to_string()),
                ("PAID_PROXY_PORT".to_string(), "3128".to_string()),
            ])
        );
    }

    #[test]
    fn the_forwarder_is_hardened_and_named_per_target() {
        let config = DockerConfig::default();
        let egress = EgressConfig::proxy(8089);
        let body = forwarder_body(&config, &egress).unwrap();
        let host = body.host_config.clone().unwrap();
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!((host.memory, host.memory_swap, host.pids_limit), (Some(64 << 20), Some(64 << 20), Some(64)));
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!(host.extra_hosts, Some(vec!["paid-proxy-upstream:host-gateway".to_string()]));
        assert_eq!(host.sysctls.unwrap()["net.ipv4.ip_forward"], "0");
        assert_eq!(body.labels.unwrap()["paid.role"], "forwarder");
        assert!(body.env.unwrap().contains(&"PAID_FWD_HOST=paid-proxy-upstream".to_string()));

        let direct = EgressConfig { proxy_host: "10.0.0.7".into(), ..EgressConfig::proxy(8089) };
        let body = forwarder_body(&config, &direct).unwrap();
        assert_eq!(body.host_config.unwrap().extra_hosts, None);
        assert!(body.env.unwrap().contains(&"PAID_FWD_HOST=10.0.0.7".to_string()));

        let name = forwarder_name(&config, &egress);
        assert!(name.starts_with("paid-egress-") && name.len() == "paid-egress-".len() + 12, "{name}");
        assert_eq!(name, forwarder_name(&config, &EgressConfig::proxy(8089)), "stable");
        assert_ne!(name, forwarder_name(&config, &direct), "one per target");
    }

    #[test]
    fn spares_refill_to_their_number_and_go_stale() {
        let config = DockerConfig { egress: Some(EgressConfig::proxy(8089)), ..DockerConfig::default() };
        let egress = Egress::from_config(&config, "i").unwrap().unwrap();
        let net = |name: &str| SandboxNet { name: name.into(), env: BTreeMap::new() };
        assert_eq!(egress.take_spare(0), None);
        assert_eq!(egress.reserve_spares(0), 2);
        assert_eq!(egress.reserve_spares(0), 0, "both creates already reserved");
        assert_eq!(egress.finish_spare(0, Some(net("a"))), None);
        assert_eq!(egress.finish_spare(0, None), None);
        assert!(egress.holds_spare("a") && !egress.holds_spare("b"));
        assert_eq!(egress.reserve_spares(0), 1);
        assert_eq!(egress.reserve_spares(1), 2, "per endpoint");
        assert_eq!(egress.take_spare(0), Some(net("a")));
        assert_eq!(egress.take_stale_spares().len(), 0);
        let (drained, filling) = egress.drain_spares();
        assert_eq!((drained.len(), filling), (0, 3));
        assert_eq!(egress.finish_spare(0, Some(net("late"))), Some(net("late")), "drained: handed back");
        assert_eq!(egress.drain_spares().1, 3, "still in flight until removed");
        egress.release_spare(0);
        assert_eq!(egress.drain_spares().1, 2);
        assert_eq!(egress.reserve_spares(0), 0);
    }

    #[test]
    fn egress_is_on_by_default_and_needs_no_fixed_network() {
        let with = |egress: EgressConfig, network: Option<&str>| DockerConfig {
            egress: Some(egress),
            network: network.map(str::to_string),
            ..DockerConfig::default()
        };
        let zero = EgressConfig { proxy_port: Some(0), ..EgressConfig::default() };
        let err = Egress::from_config(&with(zero, None), "i").unwrap_err();
        assert!(matches!(err, DockerError::Invalid { what: "egress.proxy_port", .. }), "{err}");
        let err = Egress::from_config(&with(EgressConfig::proxy(8089), Some("bridge")), "i").unwrap_err();
        assert!(matches!(err, DockerError::Invalid { what: "network", .. }), "{err}");
        let proxied = Egress::from_config(&with(EgressConfig::proxy(8089), None), "i").unwrap().unwrap();
        assert!(!proxied.isolated());
        // The default: on, with no proxy, so no network and no spares.
        let default = Egress::from_config(&DockerConfig::default(), "i").unwrap().unwrap();
        assert!(default.isolated());
        assert_eq!(default.reserve_spares(0), 0);
        // Off only when asked.
        let off = DockerConfig { egress: None, ..DockerConfig::default() };
        assert!(Egress::from_config(&off, "i").unwrap().is_none());
    }
}
