//! [`DockerRuntime`]: the [`SandboxRuntime`] on one or more Docker engines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::stream::BoxStream;
use paid_core::metrics::Metrics;
use paid_core::{
    ExecEvent, ExecRequest, Ids, RandomIds, Result, SandboxHandle, SandboxInfo, SandboxRuntime, SandboxSpec,
};

use crate::config::DockerConfig;
use crate::container::{SandboxUser, Shape, container_name, create_body, init_user, role, sandbox_info};
use crate::egress::{self, Egress};
use crate::endpoint::{Endpoint, Transport, least_loaded};
use crate::error::{DockerError, status_of};
use crate::exec;
use crate::permissions::make_writable;
use crate::pool::{self, Pool};
use crate::reaper::ReapPolicy;

/// A [`SandboxRuntime`] on Docker: one hardened container per run, commands
/// run in it with `docker exec`.
///
/// Cheap to clone (clones share connections, the warm pool and metrics).
/// See the [crate docs](crate) for what a sandbox looks like, and
/// [`exec`](SandboxRuntime::exec) for how commands end.
///
/// # Several engines
///
/// With [`DockerConfig::endpoints`], each new sandbox goes to the endpoint
/// with the fewest sandboxes placed through it (pooled ones included, as
/// the engine lists them, plus creates in flight; ties go to the first).
/// Handles stay plain container ids: the runtime remembers where each
/// sandbox lives, and asks every endpoint about ids it does not know (after
/// a restart, or created by another worker).
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    shared: Arc<Shared>,
}

/// What every clone shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: DockerConfig,
    /// Random id of this runtime instance; owner label of its pool.
    pub(crate) instance: String,
    pub(crate) endpoints: Vec<Arc<Endpoint>>,
    pub(crate) egress: Option<Egress>,
    pub(crate) pool: Option<Pool>,
    tracked: Mutex<HashMap<String, Tracked>>,
    metrics: RwLock<Option<Arc<Metrics>>>,
}

/// What the runtime remembers about a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tracked {
    /// Index of its endpoint.
    pub(crate) endpoint: usize,
    /// Its project, when known.
    pub(crate) project_id: Option<String>,
    /// Whether this runtime counted it in `paid_active_containers`.
    pub(crate) counted: bool,
    /// When this runtime learned of it.
    pub(crate) since: Instant,
    /// Its slot, when it came from the warm pool.
    pub(crate) slot: Option<PathBuf>,
    /// Environment applied to every exec under the request's (a pooled
    /// sandbox's container predates its run's environment).
    pub(crate) env: BTreeMap<String, String>,
}

impl DockerRuntime {
    /// Connects to the engine(s) `config` names and agrees on an API version
    /// with each (older engines, such as 20.10 with API 1.41, are fine).
    ///
    /// # Errors
    ///
    /// [`paid_core::Error::Unavailable`] when an engine cannot be reached,
    /// with the endpoint in the message; [`paid_core::Error::InvalidInput`]
    /// for a root or non-numeric [`user`](DockerConfig::user), an
    /// [`init_user`](DockerConfig::init_user) that is root or shares the
    /// sandbox user's uid, a malformed [`umask`](DockerConfig::umask), both
    /// `endpoint` and `endpoints`, an invalid
    /// [`egress`](DockerConfig::egress), a `tcp://` or `http://` endpoint
    /// without [`tls`](DockerConfig::tls) or
    /// [`insecure`](DockerConfig::insecure), or TLS files that are missing,
    /// unreadable or do not fit together.
    pub async fn connect(config: DockerConfig) -> Result<Self> {
        SandboxUser::parse(&config.user)?;
        init_user(&config)?;
        exec::validate_umask(&config.umask)?;
        if config.endpoint.is_some() && !config.endpoints.is_empty() {
            return Err(DockerError::Invalid {
                what: "endpoints",
                message: "set either `endpoint` or `endpoints`, not both".to_string(),
            }
            .into());
        }
        // Every endpoint's transport is settled (and refused) before any is dialled.
        let transports = config
            .endpoint_list()
            .iter()
            .map(|endpoint| Transport::of(endpoint.as_deref(), &config))
            .collect::<Result<Vec<_>, _>>()?;
        let instance = RandomIds.hex(4);
        let egress = Egress::from_config(&config)?;
        let mut endpoints = Vec::new();
        for (index, transport) in transports.into_iter().enumerate() {
            let endpoint = Endpoint::connect(index, transport).await?;
            endpoints.push(Arc::new(endpoint));
        }
        let shared = Shared {
            instance,
            pool: Pool::new(&config.warm_pool),
            config,
            endpoints,
            egress,
            tracked: Mutex::default(),
            metrics: RwLock::new(None),
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// Connects to the local engine with the default configuration.
    ///
    /// # Errors
    ///
    /// As [`DockerRuntime::connect`].
    pub async fn connect_local() -> Result<Self> {
        Self::connect(DockerConfig::default()).await
    }

    /// Records `paid_active_containers{project_id}` (up once when `create`
    /// returns a sandbox, down once when it is removed, by any caller, or
    /// found gone by the reaper) and `paid_container_startup_seconds` (from
    /// `create` being called until the sandbox runs with the worktree
    /// mounted) in `metrics`. Applies to every clone. The runtime is the one
    /// place these two are recorded: callers should not record them too.
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        *self.shared.metrics.write().unwrap_or_else(|p| p.into_inner()) = Some(metrics);
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &DockerConfig {
        &self.shared.config
    }

    /// The bollard client of the first endpoint, for what the port does not
    /// cover (tests inspect containers with it).
    pub fn client(&self) -> &bollard::Docker {
        &self.shared.endpoints[0].docker
    }

    /// The bollard client of the endpoint `sandbox` lives on.
    ///
    /// # Errors
    ///
    /// [`paid_core::Error::NotFound`] when no endpoint has it.
    pub async fn client_of(&self, sandbox: &SandboxHandle) -> Result<bollard::Docker> {
        Ok(self.shared.require(&sandbox.id).await?.0.docker.clone())
    }

    /// The endpoint `sandbox` lives on, as configured.
    ///
    /// # Errors
    ///
    /// [`paid_core::Error::NotFound`] when no endpoint has it.
    pub async fn endpoint_of(&self, sandbox: &SandboxHandle) -> Result<String> {
        Ok(self.shared.require(&sandbox.id).await?.0.name.to_string())
    }

    /// The configured endpoints, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.shared.endpoints.iter().map(|e| e.name.to_string()).collect()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Shared {
    pub(crate) fn tracked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn metrics(&self) -> Option<Arc<Metrics>> {
        self.metrics.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The label `<prefix>.<name>`.
    pub(crate) fn label(&self, name: &str) -> String {
        self.config.label(name)
    }

    /// The endpoint and what is known of sandbox `id`: remembered, or found
    /// by asking each endpoint. `None` when no endpoint has it.
    pub(crate) async fn locate(&self, id: &str) -> Result<Option<(Arc<Endpoint>, Tracked)>, DockerError> {
        if let Some(tracked) = self.tracked().get(id).cloned() {
            return Ok(Some((self.endpoints[tracked.endpoint].clone(), tracked)));
        }
        let mut failure = None;
        for endpoint in &self.endpoints {
            let inspect = match endpoint.docker.inspect_container(id, None::<InspectContainerOptions>).await {
                Ok(inspect) => inspect,
                Err(e) if status_of(&e) == Some(404) => continue,
                Err(e) => {
                    failure = Some(endpoint.api("inspect container")(e));
                    continue;
                }
            };
            let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
            let home = labels
                .get(&self.label("endpoint"))
                .and_then(|name| self.endpoints.iter().find(|e| *e.name == **name))
                .unwrap_or(endpoint)
                .clone();
            let slot = labels.get(&self.label("pool.slot")).map(PathBuf::from);
            let record = match &slot {
                Some(slot) => {
                    pool::read_record(slot).ok().flatten().filter(|r| inspect.id.as_deref() == Some(&r.container))
                }
                None => None,
            };
            let tracked = Tracked {
                endpoint: home.index,
                project_id: labels
                    .get(&self.config.project_label())
                    .cloned()
                    .or_else(|| record.as_ref().and_then(|r| r.project_id.clone())),
                counted: false,
                since: Instant::now(),
                slot: record.as_ref().map(|_| slot.clone()).unwrap_or_default(),
                env: record.map(|r| r.env).unwrap_or_default(),
            };
            let full_id = inspect.id.unwrap_or_else(|| id.to_string());
            self.tracked().insert(full_id, tracked.clone());
            return Ok(Some((home, tracked)));
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Like [`locate`](Self::locate), with a missing sandbox as an error.
    async fn require(&self, id: &str) -> Result<(Arc<Endpoint>, Tracked), DockerError> {
        self.locate(id).await?.ok_or_else(|| DockerError::SandboxNotFound { id: id.to_string() })
    }

    /// The endpoint for a new sandbox: the least loaded one.
    pub(crate) async fn place(&self) -> Result<Arc<Endpoint>, DockerError> {
        if self.endpoints.len() == 1 {
            return Ok(self.endpoints[0].clone());
        }
        let loads = futures::future::join_all(self.endpoints.iter().map(|e| e.load(&self.config))).await;
        let mut first_error = None;
        let counts: Vec<usize> = loads
            .into_iter()
            .map(|load| match load {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "endpoint unavailable for placement");
                    first_error.get_or_insert(e);
                    usize::MAX
                }
            })
            .collect();
        if counts.iter().all(|&n| n == usize::MAX)
            && let Some(e) = first_error
        {
            return Err(e);
        }
        Ok(self.endpoints[least_loaded(&counts)].clone())
    }

    /// Creates and starts a container of `shape` and, when its keepalive is
    /// the egress relay, waits until the relay listens; on any failure
    /// removes what was made.
    pub(crate) async fn start_container(
        &self,
        endpoint: &Endpoint,
        name: &str,
        image: &str,
        body: ContainerCreateBody,
        shape: &Shape,
    ) -> Result<String, DockerError> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = endpoint.docker.create_container(Some(options), body).await.map_err(|e| match status_of(&e) {
            Some(404) => self.image_missing(image),
            _ => DockerError::from_bollard("create container", &endpoint.name, e),
        })?;
        if let Err(e) = endpoint.docker.start_container(&created.id, None).await {
            let _ = remove_container(endpoint, &created.id).await;
            return Err(DockerError::from_bollard("start container", &endpoint.name, e));
        }
        endpoint.oom.reset(&created.id);
        if let Some(relay) = &shape.relay
            && let Err(e) = egress::wait_for_relay(&endpoint.target(&self.config, &created.id), relay.port).await
        {
            let _ = remove_container(endpoint, &created.id).await;
            return Err(e);
        }
        Ok(created.id)
    }

    fn image_missing(&self, image: &str) -> DockerError {
        DockerError::ImageMissing { image: image.to_string(), hint: self.config.image_build_hint.clone() }
    }

    /// A cold create: the worktree is mounted as it is.
    async fn create_cold(self: &Arc<Self>, spec: &SandboxSpec) -> Result<SandboxHandle, DockerError> {
        let endpoint = self.place().await?;
        let _in_flight = endpoint.start_create();
        let worktree = spec.worktree.clone();
        tokio::task::spawn_blocking(move || make_writable(&worktree)).await.map_err(|e| {
            DockerError::Permissions { path: spec.worktree.clone(), source: std::io::Error::other(e) }
        })??;

        let mut shape = Shape::cold(&self.config, spec);
        shape.labels.insert(self.label("role"), role::SANDBOX.to_string());
        shape.labels.insert(self.label("endpoint"), endpoint.name.to_string());
        self.egress_shape(&endpoint, &mut shape).await?;
        let body = create_body(&self.config, spec, &shape)?;
        let name = container_name(&self.config, spec, &RandomIds.hex(3));
        let id = self.start_container(&endpoint, &name, &spec.image, body, &shape).await?;
        self.tracked().insert(
            id.clone(),
            Tracked {
                endpoint: endpoint.index,
                project_id: Some(spec.project_id.to_string()),
                counted: false,
                since: Instant::now(),
                slot: None,
                env: BTreeMap::new(),
            },
        );
        tracing::info!(
            sandbox = %id, name = %name, run_id = %spec.run_id, project_id = %spec.project_id,
            image = %spec.image, endpoint = %endpoint.name, "sandbox started (cold)"
        );
        Ok(SandboxHandle { id, mount_at: spec.mount_at.clone() })
    }

    /// With egress, shapes a new sandbox (see the `egress` module): no
    /// network, and with a proxy the relay to the forwarder's socket.
    pub(crate) async fn egress_shape(&self, endpoint: &Endpoint, shape: &mut Shape) -> Result<(), DockerError> {
        match &self.egress {
            Some(egress) => egress.shape(endpoint, shape).await,
            None => Ok(()),
        }
    }

    /// Removes sandbox `id` with everything that belongs to it: for a
    /// pooled one, the slot (the worktree moves back).
    pub(crate) async fn remove_sandbox(&self, id: &str) -> Result<Option<Tracked>, DockerError> {
        let Some((endpoint, tracked)) = self.locate(id).await? else { return Ok(None) };
        remove_container(&endpoint, id).await?;
        // Only the caller that takes it out of the map counts it down.
        let tracked = self.untrack(id).unwrap_or(tracked);
        if let Some(slot) = tracked.slot.clone() {
            let restored = blocking(move || {
                let record = pool::read_record(&slot)?;
                let origin = record.and_then(|r| r.origin);
                pool::detach(&slot, origin.as_deref())
            })
            .await?;
            tracing::debug!(sandbox = %id, ?restored, "pool slot released");
        }
        Ok(Some(tracked))
    }

    /// Every managed container on every endpoint, once each.
    pub(crate) async fn list_all(
        &self,
    ) -> Result<Vec<(Arc<Endpoint>, bollard::models::ContainerSummary)>, DockerError> {
        let filters = HashMap::from([("label", vec![format!("{}=true", self.config.managed_label())])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let lists =
            futures::future::join_all(self.endpoints.iter().map(|e| e.docker.list_containers(Some(options.clone()))))
                .await;
        let mut listed = Vec::new();
        for (endpoint, list) in self.endpoints.iter().zip(lists) {
            listed.push((endpoint, list.map_err(endpoint.api("list containers"))?));
        }
        // Two endpoints may name one engine: each container is reported once,
        // through the endpoint it was placed through when that is listed.
        let placed = |summary: &bollard::models::ContainerSummary| {
            summary.labels.as_ref().and_then(|l| l.get(&self.label("endpoint"))).cloned()
        };
        let mut seen = HashSet::new();
        let mut all = Vec::new();
        for home_only in [true, false] {
            for (endpoint, list) in &listed {
                for summary in list {
                    let home = placed(summary).is_none_or(|name| *name == *endpoint.name);
                    if (home || !home_only) && seen.insert(summary.id.clone().unwrap_or_default()) {
                        all.push(((*endpoint).clone(), summary.clone()));
                    }
                }
            }
        }
        Ok(all)
    }

    /// Whether a listed container is a run's sandbox (not the forwarder,
    /// not an unclaimed pool entry).
    pub(crate) fn is_run_sandbox(&self, summary: &bollard::models::ContainerSummary) -> bool {
        let labels = summary.labels.clone().unwrap_or_default();
        if labels.get(&self.label("role")).is_some_and(|r| r != role::SANDBOX) {
            return false;
        }
        let info = sandbox_info(&self.config, summary.clone());
        !(labels.contains_key(&self.label("pool.slot")) && info.run_id.is_none())
    }
}

/// Force-removes container `id` with its anonymous volumes; a missing one
/// is fine.
pub(crate) async fn remove_container(endpoint: &Endpoint, id: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
    match endpoint.docker.remove_container(id, Some(options)).await {
        Ok(()) => {}
        Err(e) if status_of(&e) == Some(404) => {}
        // Another caller is removing it right now: the outcome is the same.
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message })
            if message.contains("already in progress") => {}
        Err(e) => return Err(endpoint.api("remove container")(e)),
    }
    endpoint.oom.forget(id);
    Ok(())
}

/// Runs blocking filesystem work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DockerError> + Send + 'static,
) -> Result<T, DockerError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| DockerError::Slot {
        op: "run a filesystem task",
        path: PathBuf::new(),
        source: std::io::Error::other(e),
    })?
}

#[async_trait]
impl SandboxRuntime for DockerRuntime {
    async fn ensure_image(&self, image: &str) -> Result<()> {
        for endpoint in &self.shared.endpoints {
            match endpoint.docker.inspect_image(image).await {
                Ok(_) => {}
                Err(e) if status_of(&e) == Some(404) => return Err(self.shared.image_missing(image).into()),
                Err(e) => return Err(endpoint.api("inspect image")(e).into()),
            }
        }
        Ok(())
    }

    /// Creates a sandbox: from the warm pool when one like `spec` is ready
    /// (see "Warm pool" in the [crate docs](crate)), otherwise cold on the
    /// least-loaded endpoint.
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle> {
        let started = Instant::now();
        let shared = &self.shared;
        // Refuse a bad spec before any worktree is touched.
        create_body(&shared.config, spec, &Shape::cold(&shared.config, spec))?;
        let handle = match shared.claim(spec).await {
            Some(handle) => handle,
            None => shared.create_cold(spec).await?,
        };
        let elapsed = started.elapsed();
        shared.count_started(&handle.id, elapsed);
        tracing::debug!(sandbox = %handle.id, elapsed_ms = elapsed.as_millis() as u64, "sandbox ready");
        Ok(handle)
    }

    /// Runs `req` as the sandbox user, in `req.workdir` or the worktree
    /// mount, with `req.env` on top of the sandbox's environment.
    ///
    /// Output comes as the engine delivers it, stdout and stderr apart. The
    /// stream ends with [`ExecEvent::Exit`]:
    /// - `Code(n)`: the command exited;
    /// - `TimedOut` / `Cancelled`: `req.timeout` passed or `req.cancel` fired;
    ///   the command was killed first and the sandbox stays usable;
    /// - `OutOfMemory`: it was killed by the OOM killer.
    ///
    /// However it ends, every process in the sandbox but its init and
    /// keepalive (whatever the command left running in the background, and
    /// any other exec still running in the sandbox) is killed before the
    /// exit is reported, and the engine's process list confirms it (see
    /// "How commands end" in the [crate docs](crate)). Dropping the stream
    /// before the end kills the command too; the next exec in the sandbox
    /// waits until that is done.
    async fn exec(
        &self,
        sandbox: &SandboxHandle,
        mut req: ExecRequest,
    ) -> Result<BoxStream<'static, Result<ExecEvent>>> {
        let (endpoint, tracked) = self.shared.require(&sandbox.id).await?;
        if !tracked.env.is_empty() {
            let mut env = tracked.env;
            env.append(&mut req.env);
            req.env = env;
        }
        let workdir = req.workdir.clone().unwrap_or_else(|| sandbox.mount_at.clone());
        Ok(exec::start(endpoint.target(&self.shared.config, &sandbox.id), workdir, req).await?)
    }

    async fn is_running(&self, sandbox: &SandboxHandle) -> Result<bool> {
        let Some((endpoint, _)) = self.shared.locate(&sandbox.id).await? else { return Ok(false) };
        match endpoint.docker.inspect_container(&sandbox.id, None::<InspectContainerOptions>).await {
            Ok(inspect) => Ok(inspect.state.and_then(|s| s.running).unwrap_or(false)),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(endpoint.api("inspect container")(e).into()),
        }
    }

    async fn stop(&self, sandbox: &SandboxHandle) -> Result<()> {
        let Some((endpoint, _)) = self.shared.locate(&sandbox.id).await? else { return Ok(()) };
        let t = i32::try_from(self.shared.config.stop_timeout_secs).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(t).build();
        match endpoint.docker.stop_container(&sandbox.id, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped; 404: already gone.
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => Ok(()),
            Err(e) => Err(endpoint.api("stop container")(e).into()),
        }
    }

    /// Removes the sandbox, and for a pooled sandbox gives the worktree its
    /// directory back. Idempotent.
    async fn remove(&self, sandbox: &SandboxHandle) -> Result<()> {
        self.shared.remove_sandbox(&sandbox.id).await?;
        Ok(())
    }

    /// Run sandboxes on every endpoint (not the forwarder, not unclaimed
    /// pool entries). A claimed pooled sandbox's run comes from its name
    /// and its project from what the runtime knows or its slot record.
    async fn list_managed(&self) -> Result<Vec<SandboxInfo>> {
        let shared = &self.shared;
        let mut out = Vec::new();
        for (_, summary) in shared.list_all().await? {
            if !shared.is_run_sandbox(&summary) {
                continue;
            }
            let slot = summary.labels.as_ref().and_then(|l| l.get(&shared.label("pool.slot"))).map(PathBuf::from);
            let mut info = sandbox_info(&shared.config, summary);
            if info.project_id.is_none() {
                info.project_id = shared.tracked().get(&info.id).and_then(|t| t.project_id.clone());
            }
            if info.project_id.is_none()
                && let Some(slot) = slot
            {
                info.project_id = read_project(&slot, &info.id);
            }
            out.push(info);
        }
        Ok(out)
    }

    /// Removes every managed container that belongs to no run in
    /// `req.keep` and is at least `req.min_age` old: run sandboxes (claimed
    /// pooled ones included) with their slots, other runtimes' abandoned
    /// pool entries, orphan slots, and sandbox networks older versions
    /// left. This runtime's own pool stays ([`DockerRuntime::shutdown`]
    /// removes it).
    ///
    /// Beyond the port's contract, a kept run's sandbox idle or older than
    /// [`DockerConfig::reaper`] allows is removed too (the engine re-creates
    /// a missing sandbox). Ages are by the engine's clock; `req.now` is not
    /// used. See [`DockerRuntime::reap_with`].
    ///
    /// Pool slots younger than [`DockerConfig::reaper`]'s `grace_secs` stay
    /// whatever `req.min_age` says: one being set up has no container yet
    /// and would look orphaned.
    async fn reap(&self, req: &paid_core::ReapRequest<'_>) -> Result<paid_core::ReapReport> {
        let policy = ReapPolicy { grace: req.min_age, ..ReapPolicy::from_config(&self.shared.config.reaper) }
            .with_live_runs(req.keep.iter());
        Ok(self.reap_with(&policy).await?.into_port())
    }
}

/// The project in a slot's record, if it names container `id`.
fn read_project(slot: &Path, id: &str) -> Option<String> {
    pool::read_record(slot).ok().flatten().filter(|r| r.container == id).and_then(|r| r.project_id)
}
