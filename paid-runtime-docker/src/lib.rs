//! A [`SandboxRuntime`](paid_core::SandboxRuntime) on the Docker engine
//! (through bollard): hardened containers, streamed exec, egress control, a
//! warm pool, a reaper, and placement over several engines.
//!
//! ```no_run
//! use futures::StreamExt;
//! use paid_core::{ExecEvent, ExecRequest, SandboxRuntime, SandboxSpec};
//! use paid_runtime_docker::{DockerConfig, DockerRuntime};
//! # async fn demo(spec: SandboxSpec) -> paid_core::Result<()> {
//! let runtime = DockerRuntime::connect(DockerConfig::default()).await?;
//! runtime.ensure_image(&spec.image).await?; // names `scripts/build-images` if missing
//! let sandbox = runtime.create(&spec).await?;
//!
//! let req = ExecRequest::shell("cargo test 2>&1").with_timeout(std::time::Duration::from_secs(600));
//! let mut events = runtime.exec(&sandbox, req).await?;
//! while let Some(event) = events.next().await {
//!     match event? {
//!         ExecEvent::Stdout(bytes) | ExecEvent::Stderr(bytes) => print!("{}", String::from_utf8_lossy(&bytes)),
//!         ExecEvent::Exit(exit) => println!("exit: {exit:?}"),
//!     }
//! }
//! runtime.remove(&sandbox).await?;
//! # Ok(()) }
//! ```
//!
//! # What a sandbox is
//!
//! One container per [`SandboxSpec`](paid_core::SandboxSpec), running a
//! keepalive (`sleep infinity`, or with [egress](#egress) to a proxy the
//! relay to it) under the engine's init (which reaps orphans), with:
//! - every command run as the [`user`](DockerConfig::user) (uid 1000 by
//!   default, never root), the init and keepalive as the
//!   [`init_user`](DockerConfig::init_user) (65534, never root, never the
//!   sandbox user's uid);
//! - `CapDrop: ["ALL"]` and `SecurityOpt: ["no-new-privileges"]`;
//! - a read-only root filesystem, a tmpfs on `/tmp` (`limits.tmp_bytes`) and
//!   on the user's [`home`](DockerConfig::home);
//! - the worktree bind-mounted at `spec.mount_at`, the only writable mount.
//!   Before mounting, the runtime adds group/other write permission to it
//!   (never to `.git`), rather than changing its owner;
//! - `Memory` = `MemorySwap` = `limits.memory_bytes`, `NanoCpus` from
//!   `limits.cpus`, `PidsLimit` = `limits.pids`;
//! - labels `paid.managed=true`, `paid.run_id`, `paid.project_id` (the
//!   prefix is [configurable](DockerConfig::label_prefix)), plus
//!   `paid.role=sandbox` and `paid.endpoint` (where it was placed); and the
//!   name `paid-<run id>-<6 hex>`. A pooled
//!   sandbox is created before its run is known, so it has no run labels:
//!   its name (given at claim time) carries the run, and the reaper and
//!   [`list_managed`](paid_core::SandboxRuntime::list_managed) read it from
//!   there;
//! - with [egress](#egress), no network at all (only `lo`), and with a
//!   proxy the egress forwarder's socket volume, read-only; otherwise the
//!   configured [`network`](DockerConfig::network).
//!
//! # How commands end
//!
//! After every exec (the command exited, timed out, was cancelled, or its
//! stream was dropped) nothing it started survives: background children,
//! `nohup` jobs, `setsid` sessions and daemons are killed before the exec
//! reports its end. The sandbox's init and keepalive run as
//! [`init_user`](DockerConfig::init_user), which the sandbox user cannot
//! signal; a fresh exec as the sandbox user runs `kill -9 -1` (a builtin,
//! so it works even at the PID limit), and the engine's process list of
//! the container (`docker top`, which the sandbox cannot forge) must then
//! show nothing but the init and keepalive. No file in the sandbox decides
//! what is killed. When that cannot be achieved within two seconds, the
//! sandbox is restarted. Output is read while killing (the engine holds
//! the kill back while a flood goes unread). Execs in one sandbox are meant
//! to run one at a time: another one running when an exec ends is killed
//! too. An exit code 137 that coincides with a rise of the memory
//! cgroup's `oom_kill` counter is reported as [`ExecExit::OutOfMemory`](paid_core::ExecExit::OutOfMemory).
//!
//! # Remote engines
//!
//! A `tcp://` or `https://` [endpoint](DockerConfig::endpoint) is reached
//! over mutual TLS with [`DockerConfig::tls`] ([`TlsConfig`]: the CA, the
//! client certificate and key, as for `docker --tlsverify`); only the
//! configured CA is trusted. Without `tls`, `tcp://` and `http://` are
//! refused when the runtime connects, unless
//! [`insecure`](DockerConfig::insecure) is set, which logs a warning.
//!
//! # Egress
//!
//! Egress control is on by default ([`DockerConfig::egress`]; turning it off
//! takes an explicit `None`, `egress = "off"` in a config file). A sandbox
//! then has **no network at all**: Docker's `none` mode, only `lo`, no
//! route (an internal Docker network would still give it a default route
//! on engines before 25). With a [`proxy_port`](EgressConfig::proxy_port)
//! it reaches exactly one thing, the metering proxy, at
//! `PAID_PROXY_URL=http://127.0.0.1:3128` (also `PAID_PROXY_HOST` /
//! `PAID_PROXY_PORT`): its keepalive is a relay from that loopback port to
//! a Unix socket of the engine's forwarder container, whose volume the
//! sandbox mounts read-only, and the forwarder relays to the proxy over
//! TCP. The relay runs as the [`init_user`](DockerConfig::init_user), so
//! the sandbox user cannot stop or replace it; `create` returns once it
//! listens. Other sandboxes, the host and outside addresses are not even
//! addressable. The `egress` module docs (in the source) give the details.
//!
//! ```no_run
//! use paid_runtime_docker::{DockerConfig, DockerRuntime, EgressConfig};
//! # async fn demo() -> paid_core::Result<()> {
//! // The metering proxy listens on port 8089 of the Docker host (0.0.0.0).
//! let config = DockerConfig { egress: Some(EgressConfig::proxy(8089)), ..DockerConfig::default() };
//! let runtime = DockerRuntime::connect(config).await?;
//! # Ok(()) }
//! ```
//!
//! # Warm pool
//!
//! With [`WarmPoolConfig::per_image`] above 0, the runtime keeps that many
//! sandboxes running per pool key (image, mount point, limits), each with
//! an empty *slot* directory bind-mounted where the worktree goes. `create`
//! takes a ready one when there is one and refills in the background;
//! otherwise it creates cold. Claiming moves the worktree's entries into
//! the slot (renames on one filesystem), leaves a symbolic link to the slot
//! at the worktree's path for host-side git, and renames the container
//! after the run; `remove` puts the directory back. The sandbox sees the
//! same files with the same permissions as a cold one, and pooled sandboxes
//! are hardened and labeled identically, never reused (a claimed one is
//! removed with its run), and replaced after
//! [`max_idle_secs`](WarmPoolConfig::max_idle_secs). The engine needs no
//! change. Call [`DockerRuntime::shutdown`] before the process exits: it
//! drains the pool, and removes the egress forwarder when no sandbox uses it.
//!
//! The trade-offs: while a pooled sandbox runs, the worktree's path is a
//! symbolic link (host tools that `lstat` it see a link; git does not mind),
//! and the pool root must be on the worktrees' filesystem (otherwise every
//! claim falls back to a cold create). A record written before anything
//! moves (`<slot>.json`) lets the reaper of any worker give a worktree its
//! directory back after a crash.
//!
//! # Reaper
//!
//! [`DockerRuntime::reap_with`] removes orphaned, idle, too old and abandoned
//! sandboxes, orphan pool slots and the sandbox networks older versions
//! made, and reports them in a [`ReapReport`]. It never touches a container
//! without the management label. See [`ReapPolicy`]. Run it every few
//! minutes: it is also what replaces this runtime's stale pooled sandboxes. The
//! port's [`reap`](paid_core::SandboxRuntime::reap) (what `Engine::sweep`
//! calls) runs it with the request's keep-set and minimum age.
//!
//! Together with [`DockerRuntime::shutdown`] nothing outlives its use: after
//! a sweep and a shutdown, what carries the management label belongs to a
//! kept run (its sandbox, and the forwarder and socket volume it uses).
//!
//! # Images
//!
//! [`DockerRuntime::build_image`] builds an [`ImageBuild`] (a Dockerfile and
//! its files) on every endpoint, reporting [`BuildProgress`];
//! [`DockerRuntime::images`] lists [`ImageSummary`]s and
//! [`DockerRuntime::prune_images`] removes dangling images. Callers need no
//! bollard types.
//!
//! # Several engines
//!
//! [`DockerConfig::endpoints`] spreads sandboxes over several engines, each
//! new one to the endpoint with the fewest sandboxes; handles stay plain
//! container ids.
//!
//! # Metrics
//!
//! [`DockerRuntime::with_metrics`] records `paid_active_containers{project_id}`
//! and `paid_container_startup_seconds` in paid-core's
//! [`Metrics`](paid_core::metrics::Metrics), each in one place: a sandbox
//! counts up once when `create` returns it (and its startup time is observed
//! then) and down once when it is removed, by whichever caller, or found gone
//! by the reaper. Nothing else should record either.
//!
//! # Errors
//!
//! [`DockerError`] converts into [`paid_core::Error`] by meaning: an
//! unreachable engine is `Unavailable` ("cannot reach the Docker engine at
//! unix:///var/run/docker.sock: …; is dockerd running?"), a missing image
//! `ImageMissing` with the build command, a missing sandbox `NotFound`, and
//! other engine errors `Backend`, retryable for 5xx answers.

mod config;
mod container;
mod egress;
mod endpoint;
mod error;
mod exec;
mod images;
mod metrics;
mod permissions;
mod pool;
mod reaper;
mod relay;
mod runtime;
mod tls;
mod uplink;
mod warm;

pub use config::{DockerConfig, EgressConfig, ReaperConfig, WarmPoolConfig};
pub use egress::{PROXY_HOST_ENV, PROXY_PORT_ENV, PROXY_URL_ENV};
pub use error::DockerError;
pub use images::{BuildProgress, ImageBuild, ImageBuilt, ImageSummary, PruneReport};
pub use pool::PoolStatus;
pub use reaper::{ReapPolicy, ReapReason, ReapReport, Reaped};
pub use runtime::DockerRuntime;
pub use tls::TlsConfig;
