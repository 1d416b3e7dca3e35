//! [`DockerConfig`]: how the runtime reaches the engines and shapes
//! sandboxes, with its parts [`EgressConfig`], [`WarmPoolConfig`] and
//! [`ReaperConfig`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Configuration of a [`DockerRuntime`](crate::DockerRuntime).
///
/// Every field has a default (see [`DockerConfig::default`]), so a config file
/// only names what it changes:
///
/// ```
/// use paid_runtime_docker::DockerConfig;
///
/// let config: DockerConfig = serde_json::from_str(r#"{ "endpoint": "tcp://10.0.0.5:2375" }"#).unwrap();
/// assert_eq!(config.endpoint.as_deref(), Some("tcp://10.0.0.5:2375"));
/// assert_eq!(config.user, "1000:1000");
/// ```
///
/// Per-run limits (memory, CPUs, PIDs, `/tmp` size) are not here: they come
/// with each [`SandboxSpec`](paid_core::SandboxSpec), so they can differ per
/// project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// The engine to talk to: `unix:///path/docker.sock`, or a remote engine
    /// as `tcp://host:port` / `https://host:port` over mutual TLS (with
    /// [`tls`](Self::tls)); plaintext `tcp://` / `http://` only with
    /// [`insecure`](Self::insecure). Default `None`: the local socket, as bollard's
    /// `connect_with_local_defaults` finds it (`DOCKER_HOST` when it is a
    /// `unix://` URI, otherwise `/var/run/docker.sock`).
    pub endpoint: Option<String>,
    /// Several engines to spread sandboxes over (scale-out), in the same
    /// forms as [`endpoint`](Self::endpoint). When not empty it replaces
    /// `endpoint`, which must then be unset. Each new sandbox goes to the
    /// engine with the fewest sandboxes placed through that endpoint (see
    /// [`DockerRuntime`](crate::DockerRuntime)). Default: empty.
    pub endpoints: Vec<String>,
    /// The user every sandbox process runs as, `uid:gid`. Default
    /// `"1000:1000"`, the `agent` user of `docker/agent.Dockerfile`. Never
    /// root: [`DockerRuntime::create`](crate::DockerRuntime) refuses uid 0.
    pub user: String,
    /// Prefix of the labels put on every sandbox: `<prefix>.managed=true`,
    /// `<prefix>.run_id`, `<prefix>.project_id`. Default `"paid"`. Two
    /// deployments sharing one engine keep apart by using different prefixes.
    pub label_prefix: String,
    /// The command that builds a missing image, quoted in
    /// [`paid_core::Error::ImageMissing`]. Default `"scripts/build-images"`.
    pub image_build_hint: String,
    /// The sandbox user's home directory, mounted as a tmpfs because the root
    /// filesystem is read-only. Default `"/home/agent"`.
    pub home: String,
    /// Size of the home tmpfs in bytes. Default 256 MiB. Like `/tmp`, it
    /// counts against the sandbox's memory limit only as far as it is used.
    pub home_bytes: u64,
    /// The Docker network mode or network name sandboxes join when
    /// [`egress`](Self::egress) is off (`None`). Default `None`: with egress
    /// off, that is the engine's default bridge, which reaches everything the
    /// host reaches. Use `"none"` for no network at all.
    pub network: Option<String>,
    /// Egress control, **on by default**: every sandbox with no network at
    /// all, reaching only the metering proxy (through a relay on its own
    /// loopback and the forwarder's Unix socket) once a
    /// [`proxy_port`](EgressConfig::proxy_port) is set. `None` turns it off;
    /// in a config file that is `"egress": "off"` (TOML `egress = "off"`),
    /// and `"on"` is the default settings. When on,
    /// [`network`](Self::network) must be unset.
    #[serde(with = "egress_setting")]
    pub egress: Option<EgressConfig>,
    /// Pre-created sandboxes, so a run does not wait for a cold create.
    /// Default: off (`per_image: 0`).
    pub warm_pool: WarmPoolConfig,
    /// Thresholds of [`DockerRuntime::reap_with`](crate::DockerRuntime::reap_with).
    pub reaper: ReaperConfig,
    /// The umask of every exec, as octal. Default `"0000"`: files the agent
    /// writes into the worktree stay writable by the host user that commits
    /// and removes the worktree, which is usually a different uid than the
    /// sandbox user. Keep worktrees under a directory only the host user can
    /// enter (mode `0700`), so that this grants nothing to other local users.
    pub umask: String,
    /// Seconds [`stop`](paid_core::SandboxRuntime::stop) waits for the
    /// sandbox to exit before killing it. Default 2.
    pub stop_timeout_secs: u32,
    /// Request timeout for engine calls, in seconds. Streamed exec output is
    /// not subject to it. Default 120.
    pub request_timeout_secs: u64,
    /// The user a sandbox's init and keepalive (`sleep infinity`, or the
    /// egress relay) run as,
    /// `uid:gid`: never root and never the uid of [`user`](Self::user), so
    /// that the sandbox user, without capabilities, cannot signal them and
    /// the runtime can end every other process after each exec (`kill -9
    /// -1` as the sandbox user). Default `"65534:65534"` (`nobody`).
    pub init_user: String,
    /// TLS for `tcp://` and `https://` endpoints: the CA that signed the
    /// engine's certificate and the client certificate and key it accepts,
    /// as for `dockerd --tlsverify`. Default `None`. See
    /// [`TlsConfig`](crate::TlsConfig).
    pub tls: Option<crate::TlsConfig>,
    /// Allows `tcp://` and `http://` endpoints without [`tls`](Self::tls):
    /// plaintext and unauthenticated, so anyone on the path can run
    /// containers on that engine. Default `false`: such endpoints are
    /// refused when the runtime connects; when set, the runtime logs a
    /// warning per plaintext endpoint.
    pub insecure: bool,
}

impl DockerConfig {
    /// The endpoint as shown in messages: the configured URI, or the local
    /// socket bollard's defaults use.
    pub fn endpoint_display(&self) -> String {
        display_of(self.endpoint.as_deref())
    }

    /// The label marking sandboxes this runtime manages, `<prefix>.managed`.
    pub fn managed_label(&self) -> String {
        format!("{}.managed", self.label_prefix)
    }

    /// The label carrying the run id, `<prefix>.run_id`.
    pub fn run_label(&self) -> String {
        format!("{}.run_id", self.label_prefix)
    }

    /// The label carrying the project id, `<prefix>.project_id`.
    pub fn project_label(&self) -> String {
        format!("{}.project_id", self.label_prefix)
    }

    /// `<prefix>.<name>`, for the runtime's other labels (`role`,
    /// `endpoint`, `pool.owner`, `pool.slot`).
    pub(crate) fn label(&self, name: &str) -> String {
        format!("{}.{name}", self.label_prefix)
    }

    /// The endpoints to connect to: [`endpoints`](Self::endpoints), or the
    /// one [`endpoint`](Self::endpoint) (`None`: the local default).
    pub(crate) fn endpoint_list(&self) -> Vec<Option<String>> {
        if self.endpoints.is_empty() {
            vec![self.endpoint.clone()]
        } else {
            self.endpoints.iter().cloned().map(Some).collect()
        }
    }
}

/// How sandboxes reach the metering proxy and nothing else.
///
/// A sandbox has no network at all (Docker's `none`: only `lo`, no route).
/// A small forwarder container per engine, hardened like a sandbox, sits on
/// the [`uplink_network`](Self::uplink_network) and relays connections from
/// a Unix socket to the proxy; the socket lives in a volume of the
/// forwarder's that every sandbox mounts read-only. In the sandbox, a relay
/// (its keepalive, out of the sandbox user's reach) listens on
/// `127.0.0.1:<forwarder_port>` and relays to that socket. Sandboxes find
/// the proxy in `PAID_PROXY_URL` (`http://127.0.0.1:3128`),
/// `PAID_PROXY_HOST` and `PAID_PROXY_PORT`.
///
/// ```
/// use paid_runtime_docker::DockerConfig;
///
/// let config: DockerConfig = serde_json::from_str(r#"{ "egress": { "proxy_port": 8089 } }"#).unwrap();
/// let egress = config.egress.unwrap();
/// assert_eq!((egress.proxy_host.as_str(), egress.proxy_port), ("host-gateway", Some(8089)));
/// assert_eq!(egress.forwarder_port, 3128);
///
/// // On by default, with no proxy yet: sandboxes get no network and no relay.
/// assert_eq!(DockerConfig::default().egress.unwrap().proxy_port, None);
/// // Off only when asked for.
/// let off: DockerConfig = serde_json::from_str(r#"{ "egress": "off" }"#).unwrap();
/// assert!(off.egress.is_none());
/// ```
///
/// The settings of the per-sandbox networks of earlier versions
/// (`subnet_pool`, `subnet_prefix`, `spare_networks`, `proxy_alias`) are
/// gone; a config that still names them is refused as naming unknown
/// fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// The proxy's TCP port on [`proxy_host`](Self::proxy_host). Default
    /// `None`: no proxy, so sandboxes get no network at all (`none`) and no
    /// relay; an embedding application or `paid serve` sets it to the port
    /// its metering proxy listens on.
    pub proxy_port: Option<u16>,
    /// Where the proxy listens, as seen from the forwarder: a host name, an
    /// address, or `"host-gateway"` (default), the Docker host's address on
    /// the default bridge (`docker0`). The proxy must listen on that address
    /// (or on `0.0.0.0`), not only on `127.0.0.1`.
    pub proxy_host: String,
    /// The port of a sandbox's own loopback its relay to the proxy listens
    /// on: sandboxes reach the proxy at `http://127.0.0.1:<forwarder_port>`.
    /// Default 3128.
    pub forwarder_port: u16,
    /// The forwarder's image; it needs `python3`, as do the sandbox images
    /// (for their relay). Default `"paid/agent:bookworm"`.
    pub forwarder_image: String,
    /// The ordinary network the forwarder reaches the proxy through.
    /// Default `"bridge"`.
    pub uplink_network: String,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            proxy_port: None,
            proxy_host: "host-gateway".to_string(),
            forwarder_port: 3128,
            forwarder_image: "paid/agent:bookworm".to_string(),
            uplink_network: "bridge".to_string(),
        }
    }
}

impl EgressConfig {
    /// Egress through the proxy on port `proxy_port` of the Docker host,
    /// everything else by default.
    pub fn proxy(proxy_port: u16) -> Self {
        Self { proxy_port: Some(proxy_port), ..Self::default() }
    }
}

/// (De)serializes [`DockerConfig::egress`]: `"off"`, `"on"` (the default
/// settings) or an [`EgressConfig`] table, with the table's own errors
/// (unknown fields, wrong types) kept.
mod egress_setting {
    use serde::de::{self, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::EgressConfig;

    pub(super) fn serialize<S: Serializer>(value: &Option<EgressConfig>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(config) => config.serialize(s),
            None => s.serialize_str("off"),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<EgressConfig>, D::Error> {
        struct Setting;
        impl<'de> Visitor<'de> for Setting {
            type Value = Option<EgressConfig>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#""off", "on" or an egress table"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "off" => Ok(None),
                    "on" => Ok(Some(EgressConfig::default())),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                EgressConfig::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
            }
        }
        d.deserialize_any(Setting)
    }
}

/// The warm pool: sandboxes created ahead of demand, per image.
///
/// See "Warm pool" in the [crate docs](crate) for how a pooled sandbox gets
/// the run's worktree with the same isolation as a cold one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmPoolConfig {
    /// Ready sandboxes kept per pool key (image, mount point and limits).
    /// Default 0: no pool, every sandbox is created cold.
    pub per_image: usize,
    /// Directory of the pooled sandboxes' slot directories. It must be on
    /// the same filesystem as the worktrees (claiming moves the worktree's
    /// entries into a slot, which is a rename only within one filesystem).
    /// Default `None`: `.paid-warm-pool` next to the first worktree seen.
    pub root: Option<PathBuf>,
    /// Seconds a pooled sandbox waits before it is replaced by a fresh one.
    /// Default 1200 (20 min), below the reaper's idle threshold, so another
    /// worker's reaper never takes a live pool's sandboxes.
    pub max_idle_secs: u64,
}

impl Default for WarmPoolConfig {
    fn default() -> Self {
        Self { per_image: 0, root: None, max_idle_secs: 1200 }
    }
}

/// Thresholds of the reaper (DESIGN §7 defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReaperConfig {
    /// A sandbox with no exec for this long is removed. Default 1800 (30 min).
    pub idle_after_secs: u64,
    /// A sandbox older than this is removed. Default 86400 (24 h).
    pub max_age_secs: u64,
    /// Anything younger than this is left alone, so a sandbox being created
    /// right now is never taken for an orphan. Default 60.
    pub grace_secs: u64,
}

impl Default for ReaperConfig {
    fn default() -> Self {
        Self { idle_after_secs: 30 * 60, max_age_secs: 24 * 3600, grace_secs: 60 }
    }
}

/// An endpoint as shown in messages and labels.
pub(crate) fn display_of(endpoint: Option<&str>) -> String {
    match endpoint {
        Some(endpoint) => endpoint.to_string(),
        None => match std::env::var("DOCKER_HOST") {
            Ok(host) if host.starts_with("unix://") => host,
            _ => "unix:///var/run/docker.sock".to_string(),
        },
    }
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            endpoints: Vec::new(),
            user: "1000:1000".to_string(),
            label_prefix: "paid".to_string(),
            image_build_hint: "scripts/build-images".to_string(),
            home: "/home/agent".to_string(),
            home_bytes: 256 << 20,
            network: None,
            egress: Some(EgressConfig::default()),
            warm_pool: WarmPoolConfig::default(),
            reaper: ReaperConfig::default(),
            umask: "0000".to_string(),
            stop_timeout_secs: 2,
            request_timeout_secs: 120,
            init_user: "65534:65534".to_string(),
            tls: None,
            insecure: false,
        }
    }
}
