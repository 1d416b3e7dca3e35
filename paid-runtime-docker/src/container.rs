//! Pure translations between Paid's portable types and the engine's:
//! a [`SandboxSpec`] becomes a hardened container-create body, and a listed
//! container becomes a [`SandboxInfo`]. No I/O here, so every hardening
//! setting is unit tested (and checked against a live engine in
//! `tests/hardening.rs`, since the engine silently ignores misplaced keys).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bollard::models::{ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, HostConfig, Mount, MountType};
use paid_core::{SandboxInfo, SandboxSpec, Timestamp};

use crate::config::DockerConfig;
use crate::error::DockerError;

/// The `SecurityOpt` entry that sets the kernel's `no_new_privs` bit, spelled
/// as the engine parses it (the bare form; `no-new-privileges:true` is the
/// deprecated colon syntax).
pub(crate) const NO_NEW_PRIVILEGES: &str = "no-new-privileges";

/// A numeric `uid:gid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SandboxUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl SandboxUser {
    /// Parses `uid:gid`. Names are refused (they resolve against the image's
    /// `/etc/passwd`, which the runtime does not control) and so is uid 0.
    pub(crate) fn parse(user: &str) -> Result<Self, DockerError> {
        let invalid = |message: String| DockerError::Invalid { what: "sandbox user", message };
        let (uid, gid) =
            user.split_once(':').ok_or_else(|| invalid(format!("{user:?} is not a numeric uid:gid pair")))?;
        let uid: u32 = uid.parse().map_err(|_| invalid(format!("{user:?}: uid {uid:?} is not a number")))?;
        let gid: u32 = gid.parse().map_err(|_| invalid(format!("{user:?}: gid {gid:?} is not a number")))?;
        if uid == 0 {
            return Err(invalid("sandboxes never run as root (uid 0)".to_string()));
        }
        Ok(Self { uid, gid })
    }
}

/// The user of a sandbox's init and keepalive, [`DockerConfig::init_user`]:
/// numeric, not root, and not the sandbox user's uid (which could then
/// signal them, and whose processes could not be ended without them).
pub(crate) fn init_user(config: &DockerConfig) -> Result<SandboxUser, DockerError> {
    let user = SandboxUser::parse(&config.user)?;
    let invalid = |message: String| DockerError::Invalid { what: "init user", message };
    let init = SandboxUser::parse(&config.init_user).map_err(|e| match e {
        DockerError::Invalid { message, .. } => invalid(message),
        other => other,
    })?;
    if init.uid == user.uid {
        return Err(invalid(format!(
            "init_user {:?} has the uid of the sandbox user {:?}: the sandbox could kill its own init, and the \
             runtime could not end what an exec leaves behind; pick another uid (default 65534)",
            config.init_user, config.user
        )));
    }
    Ok(init)
}

/// The container name for a sandbox: `<prefix>-<run id>-<suffix>`.
pub(crate) fn container_name(config: &DockerConfig, spec: &SandboxSpec, suffix: &str) -> String {
    run_container_name(config, &spec.run_id.to_string(), suffix)
}

/// `<prefix>-<run id>-<suffix>`: the name of a run's sandbox, also given to
/// a pooled sandbox when a run claims it (labels cannot change after
/// creation, a name can).
pub(crate) fn run_container_name(config: &DockerConfig, run_id: &str, suffix: &str) -> String {
    format!("{}-{run_id}-{suffix}", config.label_prefix)
}

/// The run id in a container name made by [`run_container_name`] (the
/// engine reports names with a leading `/`).
pub(crate) fn run_id_from_name(config: &DockerConfig, name: &str) -> Option<String> {
    let rest = name.trim_start_matches('/').strip_prefix(&config.label_prefix)?.strip_prefix('-')?;
    let run = rest.get(..36)?;
    let uuid_like = run.len() == 36
        && run.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
    (uuid_like && rest[36..].starts_with('-')).then(|| run.to_string())
}

/// What the runtime role label says a managed container is.
pub(crate) mod role {
    /// A run's sandbox (cold, or pooled and claimed).
    pub(crate) const SANDBOX: &str = "sandbox";
    /// The egress forwarder of one engine.
    pub(crate) const FORWARDER: &str = "forwarder";
    /// The volume holding an egress forwarder's socket.
    pub(crate) const FORWARDER_SOCKET: &str = "forwarder-socket";
    /// A sandbox's own internal network, as older versions made them (the
    /// reaper still removes them).
    pub(crate) const SANDBOX_NET: &str = "sandbox-net";
}

/// The labels of a run's sandbox.
pub(crate) fn labels(config: &DockerConfig, spec: &SandboxSpec) -> HashMap<String, String> {
    HashMap::from([
        (config.managed_label(), "true".to_string()),
        (config.run_label(), spec.run_id.to_string()),
        (config.project_label(), spec.project_id.to_string()),
    ])
}

/// How one sandbox differs from the spec alone: what is mounted, its
/// labels, its environment, its network and its keepalive. A cold sandbox
/// mounts the worktree and carries the run's labels; a pooled one mounts an
/// empty slot and carries no run yet.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shape {
    /// The host directory mounted at `spec.mount_at`.
    pub(crate) mount_source: PathBuf,
    /// Every label.
    pub(crate) labels: HashMap<String, String>,
    /// The container's environment (after `HOME`, which a `HOME` entry here
    /// overrides).
    pub(crate) env: BTreeMap<String, String>,
    /// The network mode or network to join.
    pub(crate) network: Option<String>,
    /// With egress to a proxy: the relay that is the sandbox's keepalive
    /// (otherwise `sleep infinity`).
    pub(crate) relay: Option<Relay>,
}

/// A sandbox's way to the metering proxy (see the `egress` module): the
/// egress forwarder's socket volume, and the port of the sandbox's own
/// loopback its relay listens on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Relay {
    /// The relay's port on `127.0.0.1`.
    pub(crate) port: u16,
    /// The forwarder's socket volume, read-only.
    pub(crate) mount: Mount,
}

impl Shape {
    /// A cold sandbox for `spec`: its worktree, its run's labels, its
    /// environment, the configured network.
    pub(crate) fn cold(config: &DockerConfig, spec: &SandboxSpec) -> Self {
        Self {
            mount_source: spec.worktree.clone(),
            labels: labels(config, spec),
            env: spec.env.clone(),
            network: config.network.clone(),
            relay: None,
        }
    }
}

/// Turns a spec into the body of `POST /containers/create`: a non-root user,
/// all capabilities dropped, `no-new-privileges`, a read-only root with tmpfs
/// for `/tmp` and home, the worktree as the only writable bind mount, memory
/// with swap equal to it, a CPU quota, a PID limit, an init process that
/// reaps orphans, and the management labels. It keeps running its keepalive
/// (`sleep infinity`, or with egress to a proxy the relay to the forwarder's
/// socket, whose volume is then mounted read-only) until stopped; work
/// happens in execs.
pub(crate) fn create_body(
    config: &DockerConfig,
    spec: &SandboxSpec,
    shape: &Shape,
) -> Result<ContainerCreateBody, DockerError> {
    let user = SandboxUser::parse(&config.user)?;
    let init = init_user(config)?;
    validate(config, spec)?;
    let limits = &spec.limits;
    let memory = i64::try_from(limits.memory_bytes).map_err(|_| DockerError::Invalid {
        what: "sandbox memory limit",
        message: format!("{} bytes is too large", limits.memory_bytes),
    })?;
    // Nano-CPUs are whole numbers; 1.5 CPUs is 1_500_000_000.
    let nano_cpus = (limits.cpus * 1e9).round() as i64;

    let tmpfs = HashMap::from([
        ("/tmp".to_string(), format!("rw,nosuid,nodev,exec,size={},mode=1777", limits.tmp_bytes)),
        (
            config.home.clone(),
            format!("rw,nosuid,nodev,exec,size={},uid={},gid={},mode=0700", config.home_bytes, user.uid, user.gid),
        ),
    ]);
    let mut mounts = vec![Mount {
        typ: Some(MountType::BIND),
        source: Some(shape.mount_source.to_string_lossy().into_owned()),
        target: Some(spec.mount_at.clone()),
        read_only: Some(false),
        ..Default::default()
    }];
    let keepalive = match &shape.relay {
        Some(relay) => {
            mounts.push(relay.mount.clone());
            crate::relay::sandbox_entrypoint(relay.port)
        }
        None => vec!["sleep".to_string(), "infinity".to_string()],
    };

    let home = shape.env.get("HOME").unwrap_or(&config.home);
    let mut env = vec![format!("HOME={home}")];
    env.extend(shape.env.iter().filter(|(k, _)| k.as_str() != "HOME").map(|(k, v)| format!("{k}={v}")));

    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        // The init and keepalive; every exec names the sandbox user.
        user: Some(format!("{}:{}", init.uid, init.gid)),
        // The engine's init (`Init` below) runs it as its only child.
        entrypoint: Some(keepalive),
        cmd: None,
        env: Some(env),
        working_dir: Some(spec.mount_at.clone()),
        labels: Some(shape.labels.clone()),
        network_disabled: None,
        host_config: Some(HostConfig {
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec![NO_NEW_PRIVILEGES.to_string()]),
            readonly_rootfs: Some(true),
            privileged: Some(false),
            tmpfs: Some(tmpfs),
            mounts: Some(mounts),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some(nano_cpus),
            pids_limit: Some(limits.pids),
            init: Some(true),
            network_mode: shape.network.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn validate(config: &DockerConfig, spec: &SandboxSpec) -> Result<(), DockerError> {
    let invalid = |what, message: String| Err(DockerError::Invalid { what, message });
    if !spec.worktree.is_absolute() {
        return invalid("sandbox worktree", format!("{} is not an absolute path", spec.worktree.display()));
    }
    for (what, path) in [("sandbox mount point", &spec.mount_at), ("sandbox home", &config.home)] {
        if !Path::new(path).is_absolute() || path == "/" {
            return invalid(what, format!("{path:?} must be an absolute path below /"));
        }
    }
    if spec.mount_at == "/tmp" || spec.mount_at == config.home {
        return invalid("sandbox mount point", format!("{:?} is already a tmpfs", spec.mount_at));
    }
    let limits = &spec.limits;
    // The engine's own floor is 6 MiB.
    if limits.memory_bytes < 6 << 20 {
        return invalid("sandbox memory limit", format!("{} bytes is below the 6 MiB minimum", limits.memory_bytes));
    }
    if !(limits.cpus.is_finite() && limits.cpus >= 0.01) {
        return invalid("sandbox cpus", format!("{} is not a positive number of CPUs", limits.cpus));
    }
    if limits.pids < 1 {
        return invalid("sandbox pid limit", format!("{} leaves no room for a process", limits.pids));
    }
    if limits.tmp_bytes == 0 || config.home_bytes == 0 {
        return invalid("sandbox tmpfs size", "a tmpfs size of 0 means unlimited; give a size".to_string());
    }
    Ok(())
}

/// Reads a listed container as a [`SandboxInfo`]. A claimed pooled sandbox
/// has no run labels; its run comes from its name.
pub(crate) fn sandbox_info(config: &DockerConfig, summary: ContainerSummary) -> SandboxInfo {
    let mut labels = summary.labels.unwrap_or_default();
    let from_name = || summary.names.iter().flatten().find_map(|name| run_id_from_name(config, name));
    SandboxInfo {
        id: summary.id.unwrap_or_default(),
        run_id: labels.remove(&config.run_label()).or_else(from_name),
        project_id: labels.remove(&config.project_label()),
        created_at: summary.created.and_then(|secs| Timestamp::from_timestamp(secs, 0)),
        running: summary.state == Some(ContainerSummaryStateEnum::RUNNING),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use paid_core::{ProjectId, ResourceLimits, RunId};
    use uuid::Uuid;

    use super::*;

    fn spec() -> SandboxSpec {
        SandboxSpec {
            run_id: RunId(Uuid::from_u128(1)),
            project_id: ProjectId(Uuid::from_u128(2)),
            image: "paid/agent:bookworm".into(),
            worktree: PathBuf::from("/var/lib/paid/worktrees/run-1"),
            mount_at: "/workspace".into(),
            env: BTreeMap::from([("PAID_PROXY".to_string(), "http://proxy:8080".to_string())]),
            limits: ResourceLimits { memory_bytes: 512 << 20, cpus: 1.5, pids: 100, tmp_bytes: 64 << 20 },
        }
    }

    #[test]
    fn spec_becomes_a_hardened_container() {
        let body =
            create_body(&DockerConfig::default(), &spec(), &Shape::cold(&DockerConfig::default(), &spec())).unwrap();
        let expected = ContainerCreateBody {
            image: Some("paid/agent:bookworm".into()),
            user: Some("65534:65534".into()),
            entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
            env: Some(vec!["HOME=/home/agent".into(), "PAID_PROXY=http://proxy:8080".into()]),
            working_dir: Some("/workspace".into()),
            labels: Some(HashMap::from([
                ("paid.managed".to_string(), "true".to_string()),
                ("paid.run_id".to_string(), "00000000-0000-0000-0000-000000000001".to_string()),
                ("paid.project_id".to_string(), "00000000-0000-0000-0000-000000000002".to_string()),
            ])),
            host_config: Some(HostConfig {
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                readonly_rootfs: Some(true),
                privileged: Some(false),
                tmpfs: Some(HashMap::from([
                    ("/tmp".to_string(), "rw,nosuid,nodev,exec,size=67108864,mode=1777".to_string()),
                    (
                        "/home/agent".to_string(),
                        "rw,nosuid,nodev,exec,size=268435456,uid=1000,gid=1000,mode=0700".to_string(),
                    ),
                ])),
                mounts: Some(vec![Mount {
                    typ: Some(MountType::BIND),
                    source: Some("/var/lib/paid/worktrees/run-1".into()),
                    target: Some("/workspace".into()),
                    read_only: Some(false),
                    ..Default::default()
                }]),
                memory: Some(512 << 20),
                memory_swap: Some(512 << 20),
                nano_cpus: Some(1_500_000_000),
                pids_limit: Some(100),
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        pretty_assertions::assert_eq!(body, expected);
    }

    #[test]
    fn config_shapes_user_labels_network_and_home() {
        let config = DockerConfig {
            user: "2000:3000".into(),
            label_prefix: "acme".into(),
            home: "/home/bot".into(),
            network: Some("paid-internal".into()),
            ..DockerConfig::default()
        };
        let mut spec = spec();
        spec.env.insert("HOME".into(), "/workspace".into());
        let body = create_body(&config, &spec, &Shape::cold(&config, &spec)).unwrap();
        assert_eq!(body.user.as_deref(), Some("65534:65534"), "the init's user, not the sandbox user's");
        assert_eq!(body.env, Some(vec!["HOME=/workspace".into(), "PAID_PROXY=http://proxy:8080".into()]));
        let labels = body.labels.unwrap();
        assert_eq!(labels.get("acme.managed").map(String::as_str), Some("true"));
        assert!(labels.contains_key("acme.run_id") && labels.contains_key("acme.project_id"));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("paid-internal"));
        assert!(host.tmpfs.unwrap()["/home/bot"].contains("uid=2000,gid=3000"));
    }

    #[test]
    fn refuses_root_names_and_nonsense() {
        let cases: Vec<(DockerConfig, SandboxSpec)> = vec![
            (DockerConfig { user: "0:0".into(), ..Default::default() }, spec()),
            (DockerConfig { user: "agent".into(), ..Default::default() }, spec()),
            (DockerConfig { user: "root:root".into(), ..Default::default() }, spec()),
            (DockerConfig { init_user: "0:0".into(), ..Default::default() }, spec()),
            (DockerConfig { init_user: "nobody".into(), ..Default::default() }, spec()),
            (DockerConfig { init_user: "1000:2000".into(), ..Default::default() }, spec()),
            (DockerConfig::default(), SandboxSpec { worktree: "relative/dir".into(), ..spec() }),
            (DockerConfig::default(), SandboxSpec { mount_at: "workspace".into(), ..spec() }),
            (DockerConfig::default(), SandboxSpec { mount_at: "/".into(), ..spec() }),
            (DockerConfig::default(), SandboxSpec { mount_at: "/tmp".into(), ..spec() }),
            (
                DockerConfig::default(),
                SandboxSpec { limits: ResourceLimits { memory_bytes: 1024, ..spec().limits }, ..spec() },
            ),
            (DockerConfig::default(), SandboxSpec { limits: ResourceLimits { cpus: 0.0, ..spec().limits }, ..spec() }),
            (
                DockerConfig::default(),
                SandboxSpec { limits: ResourceLimits { cpus: f64::NAN, ..spec().limits }, ..spec() },
            ),
            (DockerConfig::default(), SandboxSpec { limits: ResourceLimits { pids: 0, ..spec().limits }, ..spec() }),
            (
                DockerConfig::default(),
                SandboxSpec { limits: ResourceLimits { tmp_bytes: 0, ..spec().limits }, ..spec() },
            ),
        ];
        for (config, spec) in cases {
            let err = create_body(&config, &spec, &Shape::cold(&config, &spec)).unwrap_err();
            assert!(matches!(err, DockerError::Invalid { .. }), "{config:?} {spec:?} gave {err:?}");
        }
    }

    #[test]
    fn names_carry_the_run() {
        assert_eq!(
            container_name(&DockerConfig::default(), &spec(), "a1b2c3"),
            "paid-00000000-0000-0000-0000-000000000001-a1b2c3"
        );
        let config = DockerConfig::default();
        let run = "00000000-0000-0000-0000-000000000001";
        for (name, want) in [
            ("/paid-00000000-0000-0000-0000-000000000001-a1b2c3", Some(run)),
            ("paid-00000000-0000-0000-0000-000000000001-x", Some(run)),
            ("/paid-pool-a1b2c3d4e5f6", None),
            ("/paid-00000000-0000-0000-0000-00000000000g-a1b2c3", None),
            ("/paid-00000000-0000-0000-0000-000000000001", None),
            ("/acme-00000000-0000-0000-0000-000000000001-a1b2c3", None),
            ("/paid-egress-1a2b", None),
        ] {
            assert_eq!(run_id_from_name(&config, name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn a_shape_decides_mount_labels_env_network_and_keepalive() {
        let config = DockerConfig::default();
        let socket = Mount {
            typ: Some(MountType::VOLUME),
            source: Some("paid-egress-1-sock".into()),
            target: Some("/run/paid-egress".into()),
            read_only: Some(true),
            ..Default::default()
        };
        let shape = Shape {
            mount_source: PathBuf::from("/pool/slot-1"),
            labels: HashMap::from([("paid.managed".to_string(), "true".to_string())]),
            env: BTreeMap::from([("PAID_PROXY_URL".to_string(), "http://127.0.0.1:3128".to_string())]),
            network: Some("none".into()),
            relay: Some(Relay { port: 3128, mount: socket.clone() }),
        };
        let body = create_body(&config, &spec(), &shape).unwrap();
        assert_eq!(body.env, Some(vec!["HOME=/home/agent".into(), "PAID_PROXY_URL=http://127.0.0.1:3128".into()]));
        assert_eq!(body.labels, Some(shape.labels.clone()));
        assert_eq!(body.entrypoint, Some(crate::relay::sandbox_entrypoint(3128)), "the relay is the keepalive");
        assert_eq!(body.user.as_deref(), Some("65534:65534"), "run by the init user, out of the sandbox's reach");
        let host = body.host_config.unwrap();
        assert_eq!((host.network_mode.as_deref(), host.init), (Some("none"), Some(true)));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].source.as_deref(), Some("/pool/slot-1"));
        assert_eq!(mounts[0].target.as_deref(), Some("/workspace"));
        assert_eq!(mounts[1], socket);
    }

    #[test]
    fn listed_containers_become_sandbox_infos() {
        let summary = ContainerSummary {
            id: Some("c0ffee".into()),
            created: Some(1_700_000_000),
            state: Some(ContainerSummaryStateEnum::RUNNING),
            labels: Some(labels(&DockerConfig::default(), &spec())),
            ..Default::default()
        };
        pretty_assertions::assert_eq!(
            sandbox_info(&DockerConfig::default(), summary),
            SandboxInfo {
                id: "c0ffee".into(),
                run_id: Some("00000000-0000-0000-0000-000000000001".into()),
                project_id: Some("00000000-0000-0000-0000-000000000002".into()),
                created_at: Timestamp::from_timestamp(1_700_000_000, 0),
                running: true,
            }
        );
        let bare = ContainerSummary {
            id: Some("x".into()),
            state: Some(ContainerSummaryStateEnum::EXITED),
            ..Default::default()
        };
        assert_eq!(
            sandbox_info(&DockerConfig::default(), bare),
            SandboxInfo { id: "x".into(), run_id: None, project_id: None, created_at: None, running: false }
        );
    }
}
