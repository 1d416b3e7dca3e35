//! The warm pool as the runtime runs it: fill, claim, destroy, drain (see
//! "Warm pool" in the crate docs; the bookkeeping is in `pool`), and the
//! runtime's shutdown.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, RemoveVolumeOptions, RenameContainerOptionsBuilder,
};
use paid_core::{Ids, RandomIds, Result, SandboxHandle, SandboxSpec};

use crate::container::{Shape, create_body, role, run_container_name};
use crate::egress::{forwarder_name, socket_volume};
use crate::endpoint::Endpoint;
use crate::error::{DockerError, status_of};
use crate::permissions::make_writable;
use crate::pool::{self, Pool, PoolEntry, PoolKey, PoolStatus, SlotRecord};
use crate::reaper::{ReapReason, ReapReport, Reaped};
use crate::runtime::{DockerRuntime, Shared, Tracked, blocking, remove_container};

impl DockerRuntime {
    /// How many pooled sandboxes are ready and being created, per pool key
    /// seen so far. Empty without a warm pool.
    pub fn pool_status(&self) -> Vec<PoolStatus> {
        self.shared().pool.as_ref().map(Pool::status).unwrap_or_default()
    }

    /// Starts filling the warm pool for sandboxes like `spec` (image, mount
    /// point and limits; its worktree tells where the pool root goes by
    /// default) and waits until `warm_pool.per_image` are ready, or
    /// `timeout` passes. Without a warm pool it returns at once.
    ///
    /// # Errors
    ///
    /// [`paid_core::Error::Timeout`] when the pool is not full in time (its
    /// creates keep going).
    pub async fn warm_up(&self, spec: &SandboxSpec, timeout: Duration) -> Result<()> {
        let Some(pool) = &self.shared().pool else { return Ok(()) };
        pool.reopen();
        pool.root_for(&spec.worktree);
        let key = pool.register(spec);
        let _ = self.shared().destroy_all(pool.take_stale()).await;
        let until = Instant::now() + timeout;
        loop {
            self.shared().refill(&key);
            let full = pool
                .status()
                .iter()
                .any(|s| s.image == spec.image && s.mount_at == spec.mount_at && s.ready >= pool.config.per_image);
            if full {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(paid_core::Error::Timeout {
                    what: format!("warm pool for {}", spec.image),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Removes every pooled sandbox no run has claimed (with its slot),
    /// and stops refilling until [`warm_up`](Self::warm_up) or the next
    /// `create`. Waits (up to a minute) for creates under way; what they
    /// make is removed too. Run sandboxes are not touched. Reports what it
    /// removed.
    ///
    /// [`shutdown`](Self::shutdown) calls it; without either, the pool's
    /// sandboxes outlive the process until another runtime's reaper finds
    /// them abandoned.
    pub async fn drain_pool(&self) -> ReapReport {
        let shared = self.shared();
        let mut report = ReapReport::default();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let (entries, pool_filling) = shared.pool.as_ref().map(|p| p.drain(true)).unwrap_or_default();
            let described: Vec<Reaped> = entries
                .iter()
                .map(|e| Reaped {
                    id: e.id.clone(),
                    name: String::new(),
                    endpoint: shared.endpoints[e.endpoint].name.to_string(),
                    run_id: None,
                    reason: ReapReason::Drained,
                })
                .collect();
            for (reaped, outcome) in described.into_iter().zip(shared.destroy_all(entries).await) {
                match outcome {
                    Ok(()) => report.containers.push(reaped),
                    Err(e) => report.errors.push(format!("{}: {e}", reaped.id)),
                }
            }
            if pool_filling == 0 {
                break;
            }
            if Instant::now() >= until {
                report.errors.push(format!("{pool_filling} pooled sandboxes still being created after a minute"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        report
    }

    /// Call once before the process exits: [drains the pool](Self::drain_pool),
    /// then on each engine where no container (of any worker) mounts the
    /// egress forwarder's socket volume any more, removes the forwarder
    /// and then its volume. Reports what it removed.
    ///
    /// Run sandboxes stay: their runs resume after a restart or on another
    /// worker, and [`reap_with`](Self::reap_with) removes them once their
    /// runs end. A worker that starts meanwhile re-creates the forwarder
    /// on its first sandbox.
    pub async fn shutdown(&self) -> ReapReport {
        let mut report = self.drain_pool().await;
        let shared = self.shared();
        let Some(egress) = shared.egress.as_ref().filter(|e| !e.isolated()) else { return report };
        let name = forwarder_name(&shared.config, &egress.config);
        for endpoint in &shared.endpoints {
            // Held so that this runtime's own creates wait.
            let _serial = endpoint.forwarder.lock().await;
            match remove_unused_forwarder(endpoint, &name).await {
                Ok(Some(id)) => report.containers.push(Reaped {
                    id,
                    name: name.clone(),
                    endpoint: endpoint.name.to_string(),
                    run_id: None,
                    reason: ReapReason::UnusedForwarder,
                }),
                Ok(None) => {}
                Err(e) => report.errors.push(format!("{name} on {}: {e}", endpoint.name)),
            }
        }
        report
    }
}

/// Removes forwarder `name` of `endpoint`, and then its socket volume, when
/// no other container mounts the volume; returns the forwarder's id when it
/// removed it. The volume goes only with the forwarder.
async fn remove_unused_forwarder(endpoint: &Endpoint, name: &str) -> Result<Option<String>, DockerError> {
    let docker = &endpoint.docker;
    let volume = socket_volume(name);
    let filters = HashMap::from([("volume", vec![volume.clone()])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let users = docker.list_containers(Some(options)).await.map_err(endpoint.api("list containers"))?;
    let id = match docker.inspect_container(name, None::<InspectContainerOptions>).await {
        Ok(inspect) => inspect.id.unwrap_or_else(|| name.to_string()),
        Err(e) if status_of(&e) == Some(404) => return Ok(None),
        Err(e) => return Err(endpoint.api("inspect forwarder")(e)),
    };
    if users.iter().any(|c| c.id.as_deref() != Some(id.as_str())) {
        return Ok(None);
    }
    remove_container(endpoint, &id).await?;
    tracing::info!(endpoint = %endpoint.name, forwarder = %name, "egress forwarder removed");
    match docker.remove_volume(&volume, None::<RemoveVolumeOptions>).await {
        Ok(()) => {}
        Err(e) if status_of(&e) == Some(404) => {}
        // A sandbox of another worker mounted it meanwhile: its next create
        // brings the forwarder back, on this same volume.
        Err(e) if status_of(&e) == Some(409) => {
            tracing::info!(endpoint = %endpoint.name, volume, "forwarder volume in use again; kept");
        }
        Err(e) => return Err(endpoint.api("remove forwarder volume")(e)),
    }
    Ok(Some(id))
}

impl Shared {
    /// Creates one pooled sandbox like `template`, with an empty slot.
    async fn create_pooled(self: &Arc<Self>, template: &SandboxSpec) -> Result<PoolEntry, DockerError> {
        let Some(pool) = &self.pool else {
            return Err(DockerError::Invalid { what: "warm pool", message: "no warm pool configured".to_string() });
        };
        let root = pool.root_for(&template.worktree);
        let slot_name = format!("{}-{}", self.instance, RandomIds.hex(6));
        let slot = tokio::task::spawn_blocking(move || pool::create_slot(&root, &slot_name))
            .await
            .map_err(|e| DockerError::Exec { id: String::new(), message: format!("slot task failed: {e}") })??;
        let endpoint = self.place().await?;
        let _in_flight = endpoint.start_create();
        let mut shape = Shape {
            mount_source: slot.clone(),
            labels: HashMap::from([
                (self.config.managed_label(), "true".to_string()),
                (self.label("role"), role::SANDBOX.to_string()),
                (self.label("endpoint"), endpoint.name.to_string()),
                (self.label("pool.owner"), self.instance.clone()),
                (self.label("pool.slot"), slot.to_string_lossy().into_owned()),
            ]),
            env: BTreeMap::new(),
            network: self.config.network.clone(),
            relay: None,
        };
        let result = async {
            self.egress_shape(&endpoint, &mut shape).await?;
            let body = create_body(&self.config, template, &shape)?;
            let name = format!("{}-pool-{}", self.config.label_prefix, RandomIds.hex(6));
            let id = self.start_container(&endpoint, &name, &template.image, body, &shape).await?;
            let record = SlotRecord {
                container: id.clone(),
                origin: None,
                run_id: None,
                project_id: None,
                env: BTreeMap::new(),
            };
            let at = slot.clone();
            if let Err(e) = blocking(move || pool::write_record(&at, &record)).await {
                let _ = remove_container(&endpoint, &id).await;
                return Err(e);
            }
            Ok(PoolEntry { id, endpoint: endpoint.index, slot: slot.clone(), born: Instant::now() })
        }
        .await;
        if result.is_err() {
            let at = slot.clone();
            let _ = blocking(move || pool::detach(&at, None)).await;
        }
        result
    }

    /// Spawns the creates that bring the pool for `key` back to size.
    pub(crate) fn refill(self: &Arc<Self>, key: &PoolKey) {
        let Some(pool) = &self.pool else { return };
        let Some((template, count)) = pool.reserve(key) else { return };
        for _ in 0..count {
            let (shared, key, template) = (self.clone(), key.clone(), template.clone());
            tokio::spawn(async move {
                let created = match shared.create_pooled(&template).await {
                    Ok(entry) => Some(entry),
                    Err(e) => {
                        tracing::warn!(image = %template.image, error = %e, "could not fill the warm pool");
                        None
                    }
                };
                if let Some(pool) = &shared.pool
                    && let Some(stray) = pool.finish(&key, created)
                {
                    let _ = shared.destroy(stray).await;
                    pool.release(&key);
                }
            });
        }
    }

    /// Hands a pooled sandbox to `spec`'s run, or `None` (then the caller
    /// creates cold): see "Warm pool" in the crate docs.
    pub(crate) async fn claim(self: &Arc<Self>, spec: &SandboxSpec) -> Option<SandboxHandle> {
        let pool = self.pool.as_ref()?;
        pool.reopen();
        pool.root_for(&spec.worktree);
        let key = PoolKey::of(spec);
        let taken = pool.take(spec);
        self.refill(&key);
        if !taken.stale.is_empty() {
            let (shared, stale) = (self.clone(), taken.stale);
            tokio::spawn(async move {
                let _ = shared.destroy_all(stale).await;
            });
        }
        let entry = taken.entry?;
        match self.attach(&entry, spec).await {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(sandbox = %entry.id, error = %e, "could not claim a pooled sandbox; creating one cold");
                let _ = self.destroy(entry).await;
                None
            }
        }
    }

    /// Moves the worktree into the entry's slot and renames the container
    /// after the run.
    async fn attach(&self, entry: &PoolEntry, spec: &SandboxSpec) -> Result<SandboxHandle, DockerError> {
        let record = SlotRecord {
            container: entry.id.clone(),
            origin: Some(spec.worktree.clone()),
            run_id: Some(spec.run_id.to_string()),
            project_id: Some(spec.project_id.to_string()),
            env: spec.env.clone(),
        };
        let (slot, worktree) = (entry.slot.clone(), spec.worktree.clone());
        let attach = blocking(move || {
            pool::write_record(&slot, &record)?;
            pool::attach(&slot, &worktree)?;
            make_writable(&slot)
        });
        // The name does not depend on the files: rename meanwhile.
        let endpoint = &self.endpoints[entry.endpoint];
        let name = run_container_name(&self.config, &spec.run_id.to_string(), &RandomIds.hex(3));
        let options = RenameContainerOptionsBuilder::new().name(&name).build();
        let (attached, renamed) = tokio::join!(attach, endpoint.docker.rename_container(&entry.id, options));
        if let Err(e) =
            attached.and(renamed.map_err(|e| DockerError::from_bollard("rename pooled sandbox", &endpoint.name, e)))
        {
            // Put the worktree back where the engine expects it (when it
            // moved at all); the caller destroys the entry.
            let (slot, worktree) = (entry.slot.clone(), spec.worktree.clone());
            let _ = blocking(move || {
                if std::fs::read_link(&worktree).is_ok_and(|target| target == slot) {
                    pool::detach(&slot, Some(&worktree))?;
                }
                Ok(())
            })
            .await;
            return Err(e);
        }
        self.tracked().insert(
            entry.id.clone(),
            Tracked {
                endpoint: entry.endpoint,
                project_id: Some(spec.project_id.to_string()),
                counted: false,
                since: Instant::now(),
                slot: Some(entry.slot.clone()),
                env: spec.env.clone(),
            },
        );
        tracing::info!(
            sandbox = %entry.id, name = %name, run_id = %spec.run_id, project_id = %spec.project_id,
            image = %spec.image, endpoint = %endpoint.name, "sandbox claimed from the warm pool"
        );
        Ok(SandboxHandle { id: entry.id.clone(), mount_at: spec.mount_at.clone() })
    }

    /// Removes an unclaimed pool entry: container and slot. Fails when the
    /// container could not be removed (then the reaper removes it later).
    pub(crate) async fn destroy(&self, entry: PoolEntry) -> Result<(), DockerError> {
        let endpoint = &self.endpoints[entry.endpoint];
        if let Err(e) = remove_container(endpoint, &entry.id).await {
            tracing::warn!(sandbox = %entry.id, error = %e, "could not remove a pooled sandbox; the reaper will");
            return Err(e);
        }
        let slot = entry.slot.clone();
        if let Err(e) = blocking(move || pool::detach(&slot, None).map(|_| ())).await {
            tracing::warn!(slot = %entry.slot.display(), error = %e, "could not delete a pool slot");
        }
        Ok(())
    }

    /// [`destroy`](Self::destroy)s `entries` concurrently; outcomes in order.
    pub(crate) async fn destroy_all(&self, entries: Vec<PoolEntry>) -> Vec<Result<(), DockerError>> {
        futures::future::join_all(entries.into_iter().map(|e| self.destroy(e))).await
    }
}
