//! [`DockerConfig`]: how the runtime reaches the engine and shapes sandboxes.

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
    /// The engine to talk to: `unix:///path/docker.sock`, `tcp://host:port`
    /// or `http://host:port`. Default `None`: the local socket, as bollard's
    /// `connect_with_local_defaults` finds it (`DOCKER_HOST` when it is a
    /// `unix://` URI, otherwise `/var/run/docker.sock`).
    pub endpoint: Option<String>,
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
    /// The Docker network mode or network name sandboxes join. Default
    /// `None`: the engine's default bridge.
    pub network: Option<String>,
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
}

impl DockerConfig {
    /// The endpoint as shown in messages: the configured URI, or the local
    /// socket bollard's defaults use.
    pub fn endpoint_display(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => match std::env::var("DOCKER_HOST") {
                Ok(host) if host.starts_with("unix://") => host,
                _ => "unix:///var/run/docker.sock".to_string(),
            },
        }
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
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            user: "1000:1000".to_string(),
            label_prefix: "paid".to_string(),
            image_build_hint: "scripts/build-images".to_string(),
            home: "/home/agent".to_string(),
            home_bytes: 256 << 20,
            network: None,
            umask: "0000".to_string(),
            stop_timeout_secs: 2,
            request_timeout_secs: 120,
        }
    }
}
