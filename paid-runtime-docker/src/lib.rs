//! A [`SandboxRuntime`](paid_core::SandboxRuntime) on the Docker engine
//! (through bollard): hardened containers, streamed exec.
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
//! One container per [`SandboxSpec`](paid_core::SandboxSpec), running
//! `sleep infinity` under the engine's init (which reaps orphans), with:
//! - the [`user`](DockerConfig::user) (uid 1000 by default, never root);
//! - `CapDrop: ["ALL"]` and `SecurityOpt: ["no-new-privileges"]`;
//! - a read-only root filesystem, a tmpfs on `/tmp` (`limits.tmp_bytes`) and
//!   on the user's [`home`](DockerConfig::home);
//! - the worktree bind-mounted at `spec.mount_at`, the only writable mount.
//!   Before mounting, the runtime adds group/other write permission to it
//!   (never to `.git`), rather than changing its owner;
//! - `Memory` = `MemorySwap` = `limits.memory_bytes`, `NanoCpus` from
//!   `limits.cpus`, `PidsLimit` = `limits.pids`;
//! - labels `paid.managed=true`, `paid.run_id`, `paid.project_id` (the
//!   prefix is [configurable](DockerConfig::label_prefix)) and the name
//!   `paid-<run id>-<6 hex>`.
//!
//! # How commands end
//!
//! Commands run as execs under a small wrapper that records their process
//! group. A timeout, a cancellation or a dropped stream kills that whole
//! group with a fork-free killer exec (it works even at the PID limit), and
//! restarts the sandbox only if the killer cannot run. An exit code 137
//! that coincides with a rise of the memory cgroup's `oom_kill` counter is
//! reported as [`ExecExit::OutOfMemory`](paid_core::ExecExit::OutOfMemory).
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
mod error;
mod exec;
mod permissions;
mod runtime;

pub use config::DockerConfig;
pub use error::DockerError;
pub use runtime::DockerRuntime;
