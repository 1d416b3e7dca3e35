//! `paid images build`: builds the sandbox image runs start from
//! (`docker/agent.Dockerfile`, built into the binary) through the Docker
//! engine's API, with a progress bar fed by the build stream.
//!
//! The image's base (`debian:bookworm-slim`) must be present or pullable;
//! `scripts/build-images` also covers hosts without a registry.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Subcommand;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use paid_runtime_docker::DockerRuntime;
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

/// The build context: a tar holding only the Dockerfile.
fn context(dockerfile: &str) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    builder.into_inner()
}

/// `Step 3/8 : RUN …` of the classic builder: (3, 8).
fn step_of(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim_start().strip_prefix("Step ")?;
    let (n, rest) = rest.split_once('/')?;
    let m: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((n.parse().ok()?, m.parse().ok()?))
}

/// Builds `dockerfile` as `tag` on `docker`, with `build_args`, showing the
/// steps on `pb`.
pub async fn build(
    docker: &DockerRuntime,
    dockerfile: &str,
    tag: &str,
    build_args: HashMap<String, String>,
    pb: &ProgressBar,
) -> anyhow::Result<BuildReport> {
    let started = Instant::now();
    let options = bollard::query_parameters::BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .buildargs(&build_args)
        .build();
    let body = bollard::body_full(bytes::Bytes::from(context(dockerfile)?));
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} steps {elapsed:>4} {msg}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(format!("building {tag}"));
    pb.enable_steady_tick(Duration::from_millis(120));
    let mut stream = docker.client().build_image(options, None, Some(body));
    let (mut id, mut steps) = (None, 0);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| anyhow::anyhow!("building {tag}: {e}"))?;
        if let Some(e) = info.error_detail.and_then(|d| d.message) {
            pb.abandon();
            anyhow::bail!("building {tag}: {e}");
        }
        if let Some(line) = &info.stream {
            if let Some((n, m)) = step_of(line) {
                pb.set_length(m);
                pb.set_position(n.saturating_sub(1));
                steps = n;
                pb.set_message(line.split_once(" : ").map_or(line.trim(), |(_, s)| s.trim()).to_string());
            }
            if let Some(sha) = line.trim().strip_prefix("Successfully built ") {
                id = Some(sha.to_string());
            }
        }
        if let Some(aux) = info.aux.and_then(|a| a.id) {
            id = Some(aux);
        }
    }
    pb.set_position(steps);
    pb.finish_and_clear();
    // The build stream reports no error for every failure: the image must exist.
    let inspected = docker
        .client()
        .inspect_image(tag)
        .await
        .map_err(|e| anyhow::anyhow!("the build of {tag} ended but the image is not there: {e}"))?;
    Ok(BuildReport { image: tag.to_string(), id: inspected.id.or(id), steps, seconds: started.elapsed().as_secs_f64() })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_of_the_classic_builder() {
        assert_eq!(step_of("Step 3/8 : RUN set -eux"), Some((3, 8)));
        assert_eq!(step_of(" ---> Using cache"), None);
    }

    #[test]
    fn the_context_is_a_tar_with_the_dockerfile() {
        let tar_bytes = context("FROM scratch\n").unwrap();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["Dockerfile"]);
    }
}
