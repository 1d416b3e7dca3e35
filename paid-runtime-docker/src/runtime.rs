//! [`DockerRuntime`]: the [`SandboxRuntime`] on one Docker engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures::stream::BoxStream;
use paid_core::{
    ExecEvent, ExecRequest, Ids, RandomIds, Result, SandboxHandle, SandboxInfo, SandboxRuntime, SandboxSpec,
};

use crate::config::DockerConfig;
use crate::container::{SandboxUser, container_name, create_body, sandbox_info};
use crate::error::{DockerError, status_of};
use crate::exec::{self, ExecTarget, OomCounts};
use crate::permissions::make_writable;

/// A [`SandboxRuntime`] on a Docker engine: one hardened container per run,
/// commands run in it with `docker exec`.
///
/// Cheap to clone (clones share the connection). See the [crate docs](crate)
/// for what a sandbox looks like, and [`exec`](SandboxRuntime::exec) for how
/// commands end.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    config: Arc<DockerConfig>,
    endpoint: Arc<str>,
    oom: Arc<OomCounts>,
}

impl DockerRuntime {
    /// Connects to the engine `config` names and agrees on an API version
    /// with it (older engines, such as 20.10 with API 1.41, are fine).
    ///
    /// # Errors
    ///
    /// [`paid_core::Error::Unavailable`] when the engine cannot be reached,
    /// with the endpoint in the message; [`paid_core::Error::InvalidInput`]
    /// for a root or non-numeric [`user`](DockerConfig::user) or a malformed
    /// [`umask`](DockerConfig::umask).
    pub async fn connect(config: DockerConfig) -> Result<Self> {
        SandboxUser::parse(&config.user)?;
        exec::validate_umask(&config.umask)?;
        let endpoint: Arc<str> = config.endpoint_display().into();
        let unreachable = |source| DockerError::Unreachable { endpoint: endpoint.to_string(), source };
        let timeout = config.request_timeout_secs;
        let docker = match config.endpoint.as_deref() {
            None => Docker::connect_with_local_defaults(),
            Some(path) if path.starts_with('/') => Docker::connect_with_unix(path, timeout, API_DEFAULT_VERSION),
            Some(uri) => Docker::connect_with_host(uri),
        }
        .map_err(unreachable)?
        .with_timeout(Duration::from_secs(timeout));
        let docker =
            docker.negotiate_version().await.map_err(|e| DockerError::from_bollard("version", &endpoint, e))?;
        tracing::debug!(endpoint = %endpoint, api = %docker.client_version(), "connected to the Docker engine");
        Ok(Self { docker, config: Arc::new(config), endpoint, oom: Arc::default() })
    }

    /// Connects to the local engine with the default configuration.
    ///
    /// # Errors
    ///
    /// As [`DockerRuntime::connect`].
    pub async fn connect_local() -> Result<Self> {
        Self::connect(DockerConfig::default()).await
    }

    /// The configuration in use.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The underlying bollard client, for what the port does not cover
    /// (tests inspect containers with it).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    fn api(&self, op: &'static str) -> impl FnOnce(bollard::errors::Error) -> DockerError + '_ {
        move |e| DockerError::from_bollard(op, &self.endpoint, e)
    }

    fn target(&self, sandbox: &SandboxHandle) -> ExecTarget {
        ExecTarget {
            docker: self.docker.clone(),
            endpoint: self.endpoint.clone(),
            sandbox: sandbox.id.clone(),
            user: self.config.user.clone(),
            umask: self.config.umask.clone(),
            oom: self.oom.clone(),
        }
    }

    async fn create_inner(&self, spec: &SandboxSpec) -> Result<SandboxHandle, DockerError> {
        let started = Instant::now();
        let body = create_body(&self.config, spec)?;
        let worktree = spec.worktree.clone();
        tokio::task::spawn_blocking(move || make_writable(&worktree)).await.map_err(|e| {
            DockerError::Permissions { path: spec.worktree.clone(), source: std::io::Error::other(e) }
        })??;

        let name = container_name(&self.config, spec, &RandomIds.hex(3));
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = self.docker.create_container(Some(options), body).await.map_err(|e| match status_of(&e) {
            Some(404) => self.image_missing(&spec.image),
            _ => DockerError::from_bollard("create container", &self.endpoint, e),
        })?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let _ = self.remove_inner(&created.id).await;
            return Err(DockerError::from_bollard("start container", &self.endpoint, e));
        }
        self.oom.reset(&created.id);
        tracing::info!(
            sandbox = %created.id,
            name = %name,
            run_id = %spec.run_id,
            project_id = %spec.project_id,
            image = %spec.image,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "sandbox started"
        );
        Ok(SandboxHandle { id: created.id, mount_at: spec.mount_at.clone() })
    }

    async fn remove_inner(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => {}
            // Another caller is removing it right now: the outcome is the same.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message })
                if message.contains("already in progress") => {}
            Err(e) => return Err(self.api("remove container")(e)),
        }
        self.oom.forget(id);
        Ok(())
    }

    fn image_missing(&self, image: &str) -> DockerError {
        DockerError::ImageMissing { image: image.to_string(), hint: self.config.image_build_hint.clone() }
    }
}

#[async_trait]
impl SandboxRuntime for DockerRuntime {
    async fn ensure_image(&self, image: &str) -> Result<()> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(self.image_missing(image).into()),
            Err(e) => Err(self.api("inspect image")(e).into()),
        }
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle> {
        Ok(self.create_inner(spec).await?)
    }

    /// Runs `req` as the sandbox user, in `req.workdir` or the worktree
    /// mount, with `req.env` on top of the sandbox's environment.
    ///
    /// Output comes as the engine delivers it, stdout and stderr apart. The
    /// stream ends with [`ExecEvent::Exit`]:
    /// - `Code(n)`: the command exited;
    /// - `TimedOut` / `Cancelled`: `req.timeout` passed or `req.cancel` fired;
    ///   the command's process group was killed first (see "How commands
    ///   end" in the [crate docs](crate)) and the sandbox stays usable;
    /// - `OutOfMemory`: it was killed by the OOM killer.
    ///
    /// Dropping the stream before the end kills the command too.
    async fn exec(&self, sandbox: &SandboxHandle, req: ExecRequest) -> Result<BoxStream<'static, Result<ExecEvent>>> {
        let workdir = req.workdir.clone().unwrap_or_else(|| sandbox.mount_at.clone());
        Ok(exec::start(self.target(sandbox), workdir, req).await?)
    }

    async fn is_running(&self, sandbox: &SandboxHandle) -> Result<bool> {
        match self.docker.inspect_container(&sandbox.id, None::<InspectContainerOptions>).await {
            Ok(inspect) => Ok(inspect.state.and_then(|s| s.running).unwrap_or(false)),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.api("inspect container")(e).into()),
        }
    }

    async fn stop(&self, sandbox: &SandboxHandle) -> Result<()> {
        let t = i32::try_from(self.config.stop_timeout_secs).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(t).build();
        match self.docker.stop_container(&sandbox.id, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped; 404: already gone.
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => Ok(()),
            Err(e) => Err(self.api("stop container")(e).into()),
        }
    }

    async fn remove(&self, sandbox: &SandboxHandle) -> Result<()> {
        Ok(self.remove_inner(&sandbox.id).await?)
    }

    async fn list_managed(&self) -> Result<Vec<SandboxInfo>> {
        let filters = HashMap::from([("label", vec![format!("{}=true", self.config.managed_label())])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let containers = self.docker.list_containers(Some(options)).await.map_err(self.api("list containers"))?;
        Ok(containers.into_iter().map(|summary| sandbox_info(&self.config, summary)).collect())
    }
}
