//! Egress control: sandboxes have no network at all, and reach the metering
//! proxy through a Unix socket of a forwarder per engine.
//!
//! # Why no network
//!
//! Any Docker network gives a sandbox more than the proxy. On the engine we
//! run (20.10), even an `Internal: true` bridge network with no host-side
//! address (`com.docker.network.bridge.inhibit_ipv4`) gives its containers a
//! default route, to a gateway address nobody holds: a dead end, but a
//! route, and one a change of the host's setup could bring to life (Docker
//! 25 stopped installing it, moby PR #46603). Deleting it from inside takes
//! `CAP_NET_ADMIN`, which a sandbox never has (and `no-new-privileges`
//! keeps even a privileged `docker exec` from getting it). Traffic to the
//! host itself goes through the host's `INPUT` chain, which Docker does not
//! filter, so every host port on `0.0.0.0` is one route away.
//!
//! So a sandbox gets Docker's `none` network mode: a network namespace with
//! only `lo` and no route at all. Nothing in it can send a packet anywhere
//! but to itself.
//!
//! # How the proxy is reached
//!
//! - The **forwarder**, one container per engine (and label prefix and
//!   proxy target), named so that workers sharing the engine share it,
//!   listens on a Unix socket ([`SOCKET_PATH`]) in a named volume of its own
//!   (`<forwarder name>-sock`, a small tmpfs owned by the sandbox user) and
//!   relays each connection over TCP to the proxy. It is on the uplink
//!   network (default `bridge`), which is what makes a proxy on another host
//!   than a remote engine reachable. It runs the sandbox image's `python3`
//!   ([`FORWARDER_SCRIPT`]), hardened like a sandbox (non-root, no
//!   capabilities, read-only root, memory/CPU/PID limits, IP forwarding off),
//!   and the engine restarts it if it dies.
//! - Each **sandbox** mounts that volume **read-only** at [`SOCKET_DIR`]
//!   (connecting to a socket needs no write access to the mount; replacing
//!   or removing it does), and its keepalive, instead of `sleep infinity`,
//!   is a small relay ([`SANDBOX_RELAY_SCRIPT`]) that listens on the
//!   sandbox's own `127.0.0.1:<forwarder_port>` and relays to the socket. It
//!   runs as the [`init_user`](crate::DockerConfig::init_user) under the
//!   engine's init, so the sandbox user cannot kill it, and the runtime's
//!   kill of everything else after each exec spares it. `PAID_PROXY_URL` is
//!   `http://127.0.0.1:3128` in every sandbox.
//!
//! A socket reaches only the forwarder, and the forwarder only the proxy:
//! another sandbox, the host's ports and the outside are not addressable
//! at all. `create` returns once the relay listens.
//!
//! With egress on and no proxy (no [`proxy_port`](EgressConfig::proxy_port))
//! a sandbox still gets `none`, with `sleep infinity` as its keepalive, no
//! volume and no forwarder.
//!
//! [`SOCKET_PATH`]: crate::relay::SOCKET_PATH
//! [`SOCKET_DIR`]: crate::relay::SOCKET_DIR
//! [`FORWARDER_SCRIPT`]: crate::relay::FORWARDER_SCRIPT
//! [`SANDBOX_RELAY_SCRIPT`]: crate::relay::SANDBOX_RELAY_SCRIPT

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, InspectContainerOptions};
use tokio::time::Instant;

use crate::config::{DockerConfig, EgressConfig};
use crate::container::{NO_NEW_PRIVILEGES, Relay, SandboxUser, Shape, role};
use crate::endpoint::Endpoint;
use crate::error::{DockerError, status_of};
use crate::exec::{ExecTarget, run_captured};
use crate::relay::{FORWARDER_SCRIPT, SOCKET_DIR, SOCKET_PATH, relay_listening};
use crate::runtime::remove_container;

/// Environment variable with the proxy's URL, as a sandbox reaches it.
pub const PROXY_URL_ENV: &str = "PAID_PROXY_URL";
/// Environment variable with the proxy's address (no port).
pub const PROXY_HOST_ENV: &str = "PAID_PROXY_HOST";
/// Environment variable with the proxy's port.
pub const PROXY_PORT_ENV: &str = "PAID_PROXY_PORT";

/// The host name the forwarder resolves to the proxy host when that is
/// `host-gateway`.
const UPSTREAM_ALIAS: &str = "paid-proxy-upstream";
/// How long `create` waits for a sandbox's relay to listen.
const RELAY_START: Duration = Duration::from_secs(15);

/// The environment that tells a sandbox where the proxy is: its own
/// loopback, where its relay listens on `port`.
pub(crate) fn proxy_env(port: u16) -> BTreeMap<String, String> {
    BTreeMap::from([
        (PROXY_URL_ENV.to_string(), format!("http://127.0.0.1:{port}")),
        (PROXY_HOST_ENV.to_string(), "127.0.0.1".to_string()),
        (PROXY_PORT_ENV.to_string(), port.to_string()),
    ])
}

/// The forwarder's container name on one engine: stable per label prefix
/// and proxy target, so workers sharing the engine share it. (The hash
/// still covers `forwarder_port`, as it did when the forwarder listened on
/// it, so an older version's forwarder has this name and is replaced.)
pub(crate) fn forwarder_name(config: &DockerConfig, egress: &EgressConfig) -> String {
    let target = format!("{}:{}:{}", egress.proxy_host, egress.proxy_port.unwrap_or(0), egress.forwarder_port);
    // FNV-1a: stable across processes and versions, unlike `DefaultHasher`.
    let hash = target.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{}-egress-{:012x}", config.label_prefix, hash & 0xffff_ffff_ffff)
}

/// The name of the volume holding forwarder `forwarder`'s socket.
pub(crate) fn socket_volume(forwarder: &str) -> String {
    format!("{forwarder}-sock")
}

/// The local driver's options of a socket volume: a small tmpfs owned by
/// the sandbox user (the forwarder's user), writable by it alone.
fn volume_driver_opts(config: &DockerConfig) -> Result<HashMap<String, String>, DockerError> {
    let user = SandboxUser::parse(&config.user)?;
    Ok(HashMap::from([
        ("type".to_string(), "tmpfs".to_string()),
        ("device".to_string(), "tmpfs".to_string()),
        ("o".to_string(), format!("size=64k,uid={},gid={},mode=0755,nosuid,nodev,noexec", user.uid, user.gid)),
    ]))
}

fn volume_labels(config: &DockerConfig) -> HashMap<String, String> {
    HashMap::from([
        (config.managed_label(), "true".to_string()),
        (config.label("role"), role::FORWARDER_SOCKET.to_string()),
    ])
}

/// The body that creates a forwarder's socket volume.
pub(crate) fn volume_body(config: &DockerConfig, name: &str) -> Result<VolumeCreateRequest, DockerError> {
    Ok(VolumeCreateRequest {
        name: Some(name.to_string()),
        driver: Some("local".to_string()),
        driver_opts: Some(volume_driver_opts(config)?),
        labels: Some(volume_labels(config)),
        ..Default::default()
    })
}

/// The socket volume mounted at [`SOCKET_DIR`]; read-only for a sandbox.
/// Should the volume be gone (removed between the forwarder's check and
/// the create), the engine makes it again with these same options.
fn volume_mount(config: &DockerConfig, volume: &str, read_only: bool) -> Result<Mount, DockerError> {
    Ok(Mount {
        typ: Some(MountType::VOLUME),
        source: Some(volume.to_string()),
        target: Some(SOCKET_DIR.to_string()),
        read_only: Some(read_only),
        volume_options: Some(MountVolumeOptions {
            no_copy: Some(true),
            labels: Some(volume_labels(config)),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some("local".to_string()),
                options: Some(volume_driver_opts(config)?),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The body that creates the forwarder.
pub(crate) fn forwarder_body(config: &DockerConfig, egress: &EgressConfig) -> Result<ContainerCreateBody, DockerError> {
    let user = SandboxUser::parse(&config.user)?;
    let (host, extra_hosts) = if egress.proxy_host == "host-gateway" {
        (UPSTREAM_ALIAS.to_string(), Some(vec![format!("{UPSTREAM_ALIAS}:host-gateway")]))
    } else {
        (egress.proxy_host.clone(), None)
    };
    let volume = socket_volume(&forwarder_name(config, egress));
    Ok(ContainerCreateBody {
        image: Some(egress.forwarder_image.clone()),
        user: Some(format!("{}:{}", user.uid, user.gid)),
        entrypoint: Some(vec!["python3".to_string(), "-u".to_string(), "-c".to_string(), FORWARDER_SCRIPT.to_string()]),
        cmd: None,
        env: Some(vec![
            format!("PAID_FWD_SOCKET={SOCKET_PATH}"),
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
            mounts: Some(vec![volume_mount(config, &volume, false)?]),
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

/// Egress on one runtime: the configuration, checked.
#[derive(Debug)]
pub(crate) struct Egress {
    /// The runtime's configuration (labels, user, build hint).
    runtime: DockerConfig,
    /// The egress part.
    pub(crate) config: EgressConfig,
}

impl Egress {
    /// Checks and keeps `runtime.egress`; `None` when egress is off.
    pub(crate) fn from_config(runtime: &DockerConfig) -> Result<Option<Self>, DockerError> {
        let Some(config) = &runtime.egress else { return Ok(None) };
        if runtime.network.is_some() {
            return Err(DockerError::Invalid {
                what: "network",
                message: "`network` and `egress` exclude each other: with egress sandboxes get no network".to_string(),
            });
        }
        if config.proxy_port == Some(0) {
            return Err(DockerError::Invalid {
                what: "egress.proxy_port",
                message: "give the port the metering proxy listens on (or leave it unset: no network)".to_string(),
            });
        }
        if config.forwarder_port == 0 {
            return Err(DockerError::Invalid { what: "egress.forwarder_port", message: "0 is not a port".to_string() });
        }
        Ok(Some(Self { runtime: runtime.clone(), config: config.clone() }))
    }

    /// Whether there is no proxy to reach: sandboxes get no relay, no
    /// socket, and no forwarder runs.
    pub(crate) fn isolated(&self) -> bool {
        self.config.proxy_port.is_none()
    }

    /// Shapes a new sandbox: no network; with a proxy, the socket volume
    /// (read-only), the relay as its keepalive and the proxy's address in
    /// its environment. Makes sure the forwarder runs.
    pub(crate) async fn shape(&self, endpoint: &Endpoint, shape: &mut Shape) -> Result<(), DockerError> {
        shape.network = Some("none".to_string());
        if self.isolated() {
            return Ok(());
        }
        let volume = self.ensure_forwarder(endpoint).await?;
        let port = self.config.forwarder_port;
        shape.relay = Some(Relay { port, mount: volume_mount(&self.runtime, &volume, true)? });
        shape.env.extend(proxy_env(port));
        Ok(())
    }

    /// The forwarder of `endpoint`, created (with its volume) and started
    /// when missing, replaced when an older version made it (it has no
    /// socket volume); returns the volume's name.
    pub(crate) async fn ensure_forwarder(&self, endpoint: &Endpoint) -> Result<String, DockerError> {
        let _serial = endpoint.forwarder.lock().await;
        // Workers of other processes share the forwarder: one may remove it
        // (shutting down) between our look and our start. Look again.
        for _ in 0..2 {
            if let Some(volume) = self.ensure_forwarder_once(endpoint).await? {
                return Ok(volume);
            }
        }
        self.ensure_forwarder_once(endpoint).await?.ok_or_else(|| DockerError::Egress {
            message: "the egress forwarder kept disappearing before it could start (removed by another worker)"
                .to_string(),
        })
    }

    /// One look at the forwarder: `None` when it vanished before it started.
    async fn ensure_forwarder_once(&self, endpoint: &Endpoint) -> Result<Option<String>, DockerError> {
        let config = &self.runtime;
        let docker = &endpoint.docker;
        let name = forwarder_name(config, &self.config);
        let volume = socket_volume(&name);
        match docker.inspect_container(&name, None::<InspectContainerOptions>).await {
            Ok(inspect) => {
                let id = inspect.id.clone().unwrap_or_else(|| name.clone());
                // The mounts it was created with: a forwarder another worker
                // created a moment ago and has not started yet has no runtime
                // mounts to show, and must not be taken for an older one.
                let requested = inspect.host_config.as_ref().and_then(|h| h.mounts.as_ref());
                let current = requested
                    .into_iter()
                    .flatten()
                    .any(|m| m.source.as_deref() == Some(volume.as_str()) && m.target.as_deref() == Some(SOCKET_DIR));
                if current {
                    if inspect.state.and_then(|s| s.running) != Some(true) && !start(endpoint, &id).await? {
                        return Ok(None);
                    }
                    return Ok(Some(volume));
                }
                tracing::info!(endpoint = %endpoint.name, forwarder = %name, "replacing an older egress forwarder");
                remove_container(endpoint, &id).await?;
            }
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(endpoint.api("inspect forwarder")(e)),
        }
        docker.create_volume(volume_body(config, &volume)?).await.map_err(endpoint.api("create forwarder volume"))?;
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let id = match docker.create_container(Some(options), forwarder_body(config, &self.config)?).await {
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
        if !start(endpoint, &id).await? {
            return Ok(None);
        }
        tracing::info!(endpoint = %endpoint.name, forwarder = %name, "egress forwarder started");
        Ok(Some(volume))
    }
}

/// Starts the forwarder; `false` when it is gone (another worker removed it).
async fn start(endpoint: &Endpoint, id: &str) -> Result<bool, DockerError> {
    match endpoint.docker.start_container(id, None).await {
        Ok(()) => Ok(true),
        Err(e) if status_of(&e) == Some(304) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(endpoint.api("start forwarder")(e)),
    }
}

/// Waits until the relay of the sandbox `target` names listens on
/// `127.0.0.1:port` (read from `/proc/net/tcp` by an exec as the sandbox
/// user; nothing connects to it).
pub(crate) async fn wait_for_relay(target: &ExecTarget, port: u16) -> Result<(), DockerError> {
    let until = Instant::now() + RELAY_START;
    let mut pause = Duration::from_millis(5);
    loop {
        let read = run_captured(target, vec!["cat".to_string(), "/proc/net/tcp".to_string()]).await;
        let last = match read {
            Ok((_, out)) if relay_listening(&String::from_utf8_lossy(&out), port) => return Ok(()),
            Ok(_) => "it does not listen yet".to_string(),
            Err(e) => {
                let inspect = target.docker.inspect_container(&target.sandbox, None::<InspectContainerOptions>).await;
                let state = inspect.ok().and_then(|i| i.state).unwrap_or_default();
                if state.running != Some(true) {
                    return Err(DockerError::Egress {
                        message: format!(
                            "the sandbox's proxy relay (its keepalive) exited with code {}: the image needs python3",
                            state.exit_code.unwrap_or_default()
                        ),
                    });
                }
                e.to_string()
            }
        };
        if Instant::now() >= until {
            return Err(DockerError::Egress {
                message: format!("the sandbox's proxy relay did not listen within {RELAY_START:?}: {last}"),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_is_on_the_sandboxs_own_loopback() {
        assert_eq!(
            proxy_env(3128),
            BTreeMap::from([
                ("PAID_PROXY_URL".to_string(), "http://127.0.0.1:3128".to_string()),
                ("PAID_PROXY_HOST".to_string(), "127.0.0.1".to_string()),
                ("PAID_PROXY_PORT".to_string(), "3128".to_string()),
            ])
        );
    }

    #[test]
    fn the_socket_volume_is_a_tmpfs_of_the_sandbox_user_read_only_in_sandboxes() {
        let config = DockerConfig::default();
        let body = volume_body(&config, "paid-egress-1-sock").unwrap();
        let opts = body.driver_opts.unwrap();
        assert_eq!((opts["type"].as_str(), opts["device"].as_str()), ("tmpfs", "tmpfs"));
        assert!(opts["o"].contains("uid=1000,gid=1000,mode=0755,nosuid,nodev,noexec"), "{}", opts["o"]);
        assert_eq!(body.labels.unwrap()["paid.role"], "forwarder-socket");
        let mount = volume_mount(&config, "paid-egress-1-sock", true).unwrap();
        assert_eq!(
            (mount.typ, mount.source.as_deref(), mount.target.as_deref(), mount.read_only),
            (Some(MountType::VOLUME), Some("paid-egress-1-sock"), Some("/run/paid-egress"), Some(true))
        );
        let driver = mount.volume_options.unwrap().driver_config.unwrap();
        assert_eq!(driver.options.unwrap()["o"], opts["o"], "a volume the engine re-creates is the same");
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
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].source, Some(socket_volume(&forwarder_name(&config, &egress))));
        assert_eq!(mounts[0].read_only, Some(false), "the forwarder makes the socket");
        assert_eq!(body.labels.unwrap()["paid.role"], "forwarder");
        let env = body.env.unwrap();
        assert!(env.contains(&"PAID_FWD_HOST=paid-proxy-upstream".to_string()), "{env:?}");
        assert!(env.contains(&"PAID_FWD_SOCKET=/run/paid-egress/proxy.sock".to_string()), "{env:?}");

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
    fn egress_is_on_by_default_and_needs_no_fixed_network() {
        let with = |egress: EgressConfig, network: Option<&str>| DockerConfig {
            egress: Some(egress),
            network: network.map(str::to_string),
            ..DockerConfig::default()
        };
        let zero = EgressConfig { proxy_port: Some(0), ..EgressConfig::default() };
        let err = Egress::from_config(&with(zero, None)).unwrap_err();
        assert!(matches!(err, DockerError::Invalid { what: "egress.proxy_port", .. }), "{err}");
        let err = Egress::from_config(&with(EgressConfig::proxy(8089), Some("bridge"))).unwrap_err();
        assert!(matches!(err, DockerError::Invalid { what: "network", .. }), "{err}");
        let proxied = Egress::from_config(&with(EgressConfig::proxy(8089), None)).unwrap().unwrap();
        assert!(!proxied.isolated());
        // The default: on, with no proxy, so no network and no relay.
        let default = Egress::from_config(&DockerConfig::default()).unwrap().unwrap();
        assert!(default.isolated());
        // Off only when asked.
        let off = DockerConfig { egress: None, ..DockerConfig::default() };
        assert!(Egress::from_config(&off).unwrap().is_none());
    }
}
