//! Images on the runtime's engines: build one from a Dockerfile with
//! progress, list them, prune the dangling ones. What `paid images build`
//! and the disk guard need, without bollard types.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::query_parameters::{BuildImageOptionsBuilder, ListImagesOptions, PruneImagesOptions};
use futures::StreamExt;
use paid_core::{Result, Timestamp};
use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::error::DockerError;
use crate::runtime::DockerRuntime;

/// What [`DockerRuntime::build_image`] builds: a Dockerfile (and any files
/// it `COPY`s) under a tag.
///
/// ```
/// use paid_runtime_docker::ImageBuild;
///
/// let build = ImageBuild::new("paid/agent:bookworm", "FROM debian:bookworm-slim\nCOPY motd /etc/motd\n")
///     .with_file("motd", b"hello\n".to_vec())
///     .with_build_arg("DEBIAN_MIRROR", "http://deb.debian.org/debian");
/// assert_eq!(build.tag, "paid/agent:bookworm");
/// assert_eq!(build.files["motd"], b"hello\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImageBuild {
    /// The tag the image gets, `name:tag`.
    pub tag: String,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// Other files of the build context, by path relative to its root
    /// (`Dockerfile` itself is [`dockerfile`](Self::dockerfile)).
    pub files: BTreeMap<String, Vec<u8>>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
}

impl ImageBuild {
    /// Builds `dockerfile` as `tag`, with nothing else in the context.
    pub fn new(tag: impl Into<String>, dockerfile: impl Into<String>) -> Self {
        Self { tag: tag.into(), dockerfile: dockerfile.into(), files: BTreeMap::new(), build_args: BTreeMap::new() }
    }

    /// Adds a file to the build context.
    pub fn with_file(mut self, path: impl Into<String>, contents: Vec<u8>) -> Self {
        self.files.insert(path.into(), contents);
        self
    }

    /// Adds a `--build-arg`.
    pub fn with_build_arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.build_args.insert(name.into(), value.into());
        self
    }

    /// The build context: a tar of `Dockerfile` and the files.
    fn context(&self) -> std::result::Result<Vec<u8>, DockerError> {
        let invalid = |e: std::io::Error| DockerError::Invalid { what: "image build context", message: e.to_string() };
        let mut builder = tar::Builder::new(Vec::new());
        let files = std::iter::once(("Dockerfile", self.dockerfile.as_bytes()))
            .chain(self.files.iter().map(|(path, bytes)| (path.as_str(), bytes.as_slice())));
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, bytes).map_err(invalid)?;
        }
        builder.into_inner().map_err(invalid)
    }
}

/// What a build reports as it goes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildProgress {
    /// The build starts on this endpoint (once per configured endpoint).
    Started {
        /// The endpoint, as configured.
        endpoint: String,
    },
    /// A Dockerfile step begins (`Step 3/8 : RUN …`).
    Step {
        /// Its number, from 1.
        number: u64,
        /// How many steps the Dockerfile has.
        total: u64,
        /// The instruction, e.g. `RUN apt-get update`.
        instruction: String,
    },
    /// A line of output: a step's commands, the builder's notes.
    Output(String),
    /// A status line, such as pulling the base image.
    Status(String),
}

/// What [`DockerRuntime::build_image`] built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBuilt {
    /// The tag.
    pub tag: String,
    /// The image id (`sha256:…`) on the first endpoint.
    pub id: String,
    /// Dockerfile steps run or found cached (of the last endpoint's build).
    pub steps: u64,
    /// The endpoints it was built on, in order.
    pub endpoints: Vec<String>,
    /// How long the whole build took.
    pub elapsed: Duration,
}

/// One image on one endpoint, as [`DockerRuntime::images`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// Image id, `sha256:…`.
    pub id: String,
    /// Its tags (`name:tag`); empty for a dangling image.
    pub tags: Vec<String>,
    /// Size on disk in bytes, layers shared with other images included.
    pub size_bytes: u64,
    /// When it was created.
    pub created_at: Option<Timestamp>,
    /// How many containers use it, when the engine says.
    pub containers: Option<u64>,
    /// The endpoint it is on, as configured.
    pub endpoint: String,
}

impl ImageSummary {
    /// Whether it has no tag (what [`DockerRuntime::prune_images`] may remove).
    pub fn is_dangling(&self) -> bool {
        self.tags.is_empty()
    }
}

/// What [`DockerRuntime::prune_images`] removed, over every endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Image and layer ids deleted.
    pub deleted: Vec<String>,
    /// Tags removed.
    pub untagged: Vec<String>,
    /// Disk space reclaimed, in bytes.
    pub reclaimed_bytes: u64,
}

/// `Step 3/8 : RUN …` of the classic builder: (3, 8, `RUN …`).
fn step_of(line: &str) -> Option<(u64, u64, String)> {
    let rest = line.trim_start().strip_prefix("Step ")?;
    let (n, rest) = rest.split_once('/')?;
    let total: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let instruction = rest.split_once(" : ").map_or("", |(_, s)| s.trim());
    Some((n.parse().ok()?, total.parse().ok()?, instruction.to_string()))
}

/// Turns one item of the engine's build stream into progress events.
fn progress_of(stream: Option<&str>, status: Option<&str>) -> Vec<BuildProgress> {
    let mut out = Vec::new();
    for line in stream.unwrap_or_default().lines().filter(|l| !l.trim().is_empty()) {
        out.push(match step_of(line) {
            Some((number, total, instruction)) => BuildProgress::Step { number, total, instruction },
            None => BuildProgress::Output(line.trim_end().to_string()),
        });
    }
    if let Some(status) = status.filter(|s| !s.trim().is_empty()) {
        out.push(BuildProgress::Status(status.trim_end().to_string()));
    }
    out
}

/// The crate's summary of a listed image.
fn summary_of(image: bollard::models::ImageSummary, endpoint: &str) -> ImageSummary {
    let tags = image.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect();
    ImageSummary {
        id: image.id,
        tags,
        size_bytes: u64::try_from(image.size).unwrap_or(0),
        created_at: chrono::DateTime::from_timestamp(image.created, 0),
        containers: u64::try_from(image.containers).ok(),
        endpoint: endpoint.to_string(),
    }
}

/// Adds one endpoint's prune answer to `report`.
fn add_pruned(report: &mut PruneReport, response: bollard::models::ImagePruneResponse) {
    for item in response.images_deleted.unwrap_or_default() {
        report.deleted.extend(item.deleted);
        report.untagged.extend(item.untagged);
    }
    report.reclaimed_bytes += response.space_reclaimed.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
}

impl DockerRuntime {
    /// Builds `build` on every endpoint in turn (sandboxes may be placed on
    /// any of them), calling `progress` as the engine reports steps and
    /// output. The base image must be present on the engine or pullable.
    ///
    /// # Errors
    ///
    /// [`paid_core::Error::Backend`] (not retryable) when the build fails,
    /// with the tag, the endpoint, the step it failed at and the engine's
    /// message (a bad instruction, a failing `RUN`, a missing base image);
    /// [`paid_core::Error::Unavailable`] when an engine cannot be reached;
    /// [`paid_core::Error::InvalidInput`] for a context file path the tar
    /// format refuses.
    pub async fn build_image<F>(&self, build: &ImageBuild, mut progress: F) -> Result<ImageBuilt>
    where
        F: FnMut(BuildProgress) + Send,
    {
        let started = Instant::now();
        let context = bytes::Bytes::from(build.context()?);
        let build_args: HashMap<String, String> = build.build_args.clone().into_iter().collect();
        let (mut first_id, mut steps, mut endpoints) = (None, 0, Vec::new());
        for endpoint in &self.shared().endpoints {
            progress(BuildProgress::Started { endpoint: endpoint.name.to_string() });
            let (id, n) = build_on(endpoint, build, &build_args, context.clone(), &mut progress).await?;
            first_id.get_or_insert(id);
            steps = n;
            endpoints.push(endpoint.name.to_string());
        }
        tracing::info!(image = %build.tag, ?endpoints, steps, "image built");
        Ok(ImageBuilt {
            tag: build.tag.clone(),
            id: first_id.unwrap_or_default(),
            steps,
            endpoints,
            elapsed: started.elapsed(),
        })
    }

    /// Every image on every endpoint, each with the endpoint it is on (an
    /// engine reached through two endpoints is listed twice). Intermediate
    /// images of the classic builder are not listed.
    ///
    /// # Errors
    ///
    /// When an endpoint cannot list its images.
    pub async fn images(&self) -> Result<Vec<ImageSummary>> {
        let mut all = Vec::new();
        for endpoint in &self.shared().endpoints {
            let listed =
                endpoint.docker.list_images(None::<ListImagesOptions>).await.map_err(endpoint.api("list images"))?;
            all.extend(listed.into_iter().map(|image| summary_of(image, &endpoint.name)));
        }
        Ok(all)
    }

    /// Removes dangling images (no tag, used by no container) on every
    /// endpoint, whoever built them, and reports what that freed.
    ///
    /// # Errors
    ///
    /// When an endpoint refuses or cannot be reached (a prune already
    /// running on it answers 409).
    pub async fn prune_images(&self) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        for endpoint in &self.shared().endpoints {
            let filters = HashMap::from([("dangling".to_string(), vec!["true".to_string()])]);
            let options = PruneImagesOptions { filters: Some(filters) };
            let response = endpoint.docker.prune_images(Some(options)).await.map_err(endpoint.api("prune images"))?;
            add_pruned(&mut report, response);
        }
        tracing::info!(deleted = report.deleted.len(), reclaimed_bytes = report.reclaimed_bytes, "images pruned");
        Ok(report)
    }

    /// Checks that every endpoint answers.
    ///
    /// # Errors
    ///
    /// [`paid_core::Error::Unavailable`] naming the first endpoint that
    /// does not.
    pub async fn ping(&self) -> Result<()> {
        for endpoint in &self.shared().endpoints {
            endpoint
                .docker
                .ping()
                .await
                .map_err(|e| DockerError::Unreachable { endpoint: endpoint.name.to_string(), source: e })?;
        }
        Ok(())
    }
}

/// One endpoint's build: the image id and how many steps ran.
async fn build_on<F>(
    endpoint: &Endpoint,
    build: &ImageBuild,
    build_args: &HashMap<String, String>,
    context: bytes::Bytes,
    progress: &mut F,
) -> std::result::Result<(String, u64), DockerError>
where
    F: FnMut(BuildProgress) + Send,
{
    let tag = &build.tag;
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .buildargs(build_args)
        .build();
    let mut step: Option<String> = None;
    let failed = |step: &Option<String>, message: String| DockerError::Build {
        image: tag.clone(),
        endpoint: endpoint.name.to_string(),
        step: step.clone(),
        message,
    };
    let mut stream = endpoint.docker.build_image(options, None, Some(bollard::body_full(context)));
    let mut steps = 0;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(e) => {
                return Err(match DockerError::from_bollard("build image", &endpoint.name, e) {
                    unreachable @ DockerError::Unreachable { .. } => unreachable,
                    DockerError::Api { source, .. } => failed(&step, engine_message(&source)),
                    other => other,
                });
            }
        };
        if let Some(message) = info.error_detail.and_then(|d| d.message) {
            return Err(failed(&step, message.trim().to_string()));
        }
        for event in progress_of(info.stream.as_deref(), info.status.as_deref()) {
            if let BuildProgress::Step { number, instruction, .. } = &event {
                steps = *number;
                step = Some(format!("{number}: {instruction}"));
            }
            progress(event);
        }
    }
    // The stream does not report every failure as one: the image must exist.
    let inspected =
        endpoint.docker.inspect_image(tag).await.map_err(|e| {
            failed(&step, format!("the build ended but the image is not there ({})", engine_message(&e)))
        })?;
    Ok((inspected.id.unwrap_or_default(), steps))
}

/// The engine's own message of an answer, else bollard's text.
fn engine_message(err: &bollard::errors::Error) -> String {
    match err {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.trim().to_string(),
        bollard::errors::Error::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn the_classic_builders_lines_become_steps_and_output() {
        let events = progress_of(Some("Step 3/8 : RUN set -eux\n"), None);
        assert_eq!(events, [BuildProgress::Step { number: 3, total: 8, instruction: "RUN set -eux".into() }]);
        let events = progress_of(Some(" ---> Using cache\n ---> 1dd8c4257c49\n"), Some("Pulling fs layer"));
        assert_eq!(
            events,
            [
                BuildProgress::Output(" ---> Using cache".into()),
                BuildProgress::Output(" ---> 1dd8c4257c49".into()),
                BuildProgress::Status("Pulling fs layer".into()),
            ]
        );
        assert_eq!(progress_of(Some("\n"), None), []);
    }

    #[test]
    fn the_context_is_a_tar_with_the_dockerfile_and_the_files() {
        let build = ImageBuild::new("t:1", "FROM scratch\n").with_file("etc/motd", b"hi\n".to_vec());
        let tar_bytes = build.context().unwrap();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["Dockerfile", "etc/motd"]);
        let bad = ImageBuild::new("t:1", "FROM scratch\n").with_file("../escape", Vec::new());
        assert!(matches!(bad.context(), Err(DockerError::Invalid { what: "image build context", .. })));
    }

    #[test]
    fn listed_images_and_prune_answers_become_crate_types() {
        let listed = bollard::models::ImageSummary {
            id: "sha256:abc".into(),
            repo_tags: vec!["<none>:<none>".into()],
            size: 1234,
            created: 1_704_067_200,
            containers: -1,
            ..Default::default()
        };
        let summary = summary_of(listed, "unix:///var/run/docker.sock");
        assert_eq!(
            summary,
            ImageSummary {
                id: "sha256:abc".into(),
                tags: vec![],
                size_bytes: 1234,
                created_at: chrono::DateTime::from_timestamp(1_704_067_200, 0),
                containers: None,
                endpoint: "unix:///var/run/docker.sock".into(),
            }
        );
        assert!(summary.is_dangling());

        let mut report = PruneReport::default();
        for _ in 0..2 {
            add_pruned(
                &mut report,
                bollard::models::ImagePruneResponse {
                    images_deleted: Some(vec![bollard::models::ImageDeleteResponseItem {
                        untagged: None,
                        deleted: Some("sha256:abc".into()),
                    }]),
                    space_reclaimed: Some(100),
                },
            );
        }
        assert_eq!(
            report,
            PruneReport { deleted: vec!["sha256:abc".into(); 2], untagged: vec![], reclaimed_bytes: 200 }
        );
    }
}
