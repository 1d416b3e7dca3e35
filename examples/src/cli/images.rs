//! `paid images build`: builds the sandbox image runs start from
//! (`docker/agent.Dockerfile`, built into the binary) through the Docker
//! engine's API, with a progress bar fed by the build stream.
//!
//! The image's base (`debian:bookworm-slim`) must be present or pullable;
//! `scripts/build-images` also covers hosts without a registry.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use paid_runtime_docker::{BuildProgress, DockerRuntime, ImageBuild};
use serde::Serialize;

use super::{Global, Out, one_line};
use paid_server::config::Config;

/// The sandbox image's Dockerfile.
pub const AGENT_DOCKERFILE: &str = include_str!("../../../docker/agent.Dockerfile");

/// The tag built by default.
pub const DEFAULT_TAG: &str = "paid/agent:bookworm";

/// What a build did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildReport {
    /// The tag.
    pub image: String,
    /// The image id, when the engine reported it.
    pub id: Option<String>,
    /// Dockerfile steps run (or found cached).
    pub steps: u64,
    /// How long it took.
    pub seconds: f64,
}

/// A progress bar on stderr, hidden for `--json` and when stderr is not a
/// terminal.
pub fn progress_bar(json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    }
}

/// Builds `dockerfile` as `tag` on `docker`, with `build_args`, showing the
/// steps on `pb`.
pub async fn build(
    docker: &DockerRuntime,
    dockerfile: &str,
    tag: &str,
    build_args: Vec<(String, String)>,
    pb: &ProgressBar,
) -> anyhow::Result<BuildReport> {
    let mut req = ImageBuild::new(tag, dockerfile);
    for (k, v) in build_args {
        req = req.with_build_arg(k, v);
    }
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} steps {elapsed:>4} {msg}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(format!("building {tag}"));
    pb.enable_steady_tick(Duration::from_millis(120));
    let built = docker
        .build_image(&req, |p| {
            if let BuildProgress::Step { number, total, instruction } = p {
                pb.set_length(total);
                pb.set_position(number.saturating_sub(1));
                pb.set_message(instruction);
            }
        })
        .await;
    match built {
        Ok(b) => {
            pb.set_position(b.steps);
            pb.finish_and_clear();
            Ok(BuildReport { image: b.tag, id: Some(b.id), steps: b.steps, seconds: b.elapsed.as_secs_f64() })
        }
        Err(e) => {
            pb.abandon();
            Err(e.into())
        }
    }
}

/// `paid images …`.
#[derive(Debug, Subcommand)]
pub enum ImagesCmd {
    /// Build the sandbox image (docker/agent.Dockerfile) through the Docker
    /// engine of paid.toml's [docker] section, showing the build's steps.
    Build {
        /// The tag.
        #[arg(long, default_value = DEFAULT_TAG)]
        tag: String,
        /// Agent CLIs to install from PyPI (the PIP_PACKAGES build argument).
        #[arg(long)]
        pip_packages: Option<String>,
    },
}

/// `paid images build`: local, through the Docker engine (no daemon needed).
pub async fn images(global: &Global, cmd: ImagesCmd, out: Out) -> ExitCode {
    let ImagesCmd::Build { tag, pip_packages } = cmd;
    let docker_config = if global.config.exists() {
        match Config::load(&global.config) {
            Ok(c) => c.docker,
            Err(e) => return out.config_error(&e),
        }
    } else {
        paid_runtime_docker::DockerConfig::default()
    };
    let docker = match paid_runtime_docker::DockerRuntime::connect(docker_config).await {
        Ok(d) => d,
        Err(e) => return out.fail_msg("docker_unreachable", &format!("cannot reach Docker: {e}"), 1),
    };
    let args = pip_packages.map(|p| ("PIP_PACKAGES".to_string(), p)).into_iter().collect();
    let pb = progress_bar(out.json);
    match build(&docker, AGENT_DOCKERFILE, &tag, args, &pb).await {
        Ok(report) => out.local(report, |d| {
            println!("built {} ({}) in {:.1} s, {} steps", d.image, d.id.as_deref().unwrap_or("-"), d.seconds, d.steps)
        }),
        Err(e) => out.fail_msg("build_failed", &one_line(&e), 1),
    }
}
