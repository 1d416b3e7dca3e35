//! The reaper: removes what runs left behind, and only what carries the
//! runtime's management label.
//!
//! [`DockerRuntime::reap_with`] looks at every container labeled
//! `<prefix>.managed=true` on every endpoint and removes:
//! - **orphans**: sandboxes of a run not in [`ReapPolicy::live_runs`] (the
//!   runs the store still considers alive), or with no run at all;
//! - sandboxes **older** than [`ReapPolicy::max_age`];
//! - sandboxes **idle** for longer than [`ReapPolicy::idle_after`]: no exec
//!   running and none started or ended since. Every exec marks
//!   `/tmp/.paid-activity` when it starts and ends, so this works for
//!   sandboxes of other workers too; a stopped sandbox is idle since it
//!   stopped;
//! - **abandoned pool entries**: unclaimed pooled sandboxes no live pool of
//!   this runtime holds, once older than `idle_after` (their owner died);
//!   this runtime's own pool entries past `warm_pool.max_idle_secs` are
//!   replaced by fresh ones.
//!
//! Then it removes **orphan slots** of the warm pool (whose container is
//! gone; a worktree still linked to one gets its directory back) and the
//! **sandbox networks of older versions** (which gave each sandbox an
//! internal network; today sandboxes have none) once no sandbox is on them.
//!
//! The egress forwarder and its socket volume are never removed here
//! ([`DockerRuntime::shutdown`] removes both, the volume only with the
//! forwarder). Anything younger than [`ReapPolicy::grace`] is left alone,
//! so a sandbox being created right now is never taken for an orphan.
//! Containers and networks without the label are never looked at: the
//! engine filters by label before listing.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::ContainerSummaryStateEnum;
use bollard::models::NetworkDisconnectRequest;
use bollard::query_parameters::{InspectContainerOptions, InspectNetworkOptions, ListNetworksOptionsBuilder};
use paid_core::Result;
use serde::{Deserialize, Serialize};

use crate::config::ReaperConfig;
use crate::container::{role, sandbox_info};
use crate::endpoint::Endpoint;
use crate::error::{DockerError, status_of};
use crate::exec::{ACTIVITY_FILE, run_captured};
use crate::pool::{self, Detached};
use crate::runtime::{DockerRuntime, blocking};

/// What [`DockerRuntime::reap_with`] removes.
///
/// ```
/// use paid_runtime_docker::{ReapPolicy, ReaperConfig};
///
/// let policy = ReapPolicy::from_config(&ReaperConfig::default()).with_live_runs(["0190b1e4-0000-7000-8000-000000000001"]);
/// assert_eq!(policy.idle_after.as_secs(), 1800);
/// assert_eq!(policy.max_age.as_secs(), 86_400);
/// assert!(policy.live_runs.unwrap().contains("0190b1e4-0000-7000-8000-000000000001"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReapPolicy {
    /// The runs still alive (run ids as text). A sandbox of any other run
    /// is an orphan. `None`: run ids are not checked, only age and idleness.
    pub live_runs: Option<HashSet<String>>,
    /// Idle for longer than this: removed.
    pub idle_after: Duration,
    /// Older than this: removed.
    pub max_age: Duration,
    /// Younger than this: left alone whatever else holds.
    pub grace: Duration,
}

impl ReapPolicy {
    /// The thresholds of `config`, with no live-run check.
    pub fn from_config(config: &ReaperConfig) -> Self {
        Self {
            live_runs: None,
            idle_after: Duration::from_secs(config.idle_after_secs),
            max_age: Duration::from_secs(config.max_age_secs),
            grace: Duration::from_secs(config.grace_secs),
        }
    }

    /// With the live runs: sandboxes of any other run are orphans.
    pub fn with_live_runs<I, S>(mut self, runs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        self.live_runs = Some(runs.into_iter().map(|r| r.to_string()).collect());
        self
    }
}

impl Default for ReapPolicy {
    fn default() -> Self {
        Self::from_config(&ReaperConfig::default())
    }
}

/// Why the reaper removed something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReapReason {
    /// Its run is not live, or it names no run.
    Orphan,
    /// Older than `max_age`.
    TooOld,
    /// No exec for longer than `idle_after`.
    Idle,
    /// An unclaimed pooled sandbox no live pool holds.
    AbandonedPoolEntry,
    /// This runtime's pooled sandbox, past `warm_pool.max_idle_secs`
    /// (replaced by a fresh one).
    StalePoolEntry,
    /// This runtime's unclaimed pooled sandbox, removed by
    /// [`DockerRuntime::shutdown`].
    Drained,
    /// An egress forwarder no sandbox on its engine uses any more, removed
    /// (with its socket volume) by [`DockerRuntime::shutdown`].
    UnusedForwarder,
}

/// One container the reaper removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaped {
    /// Container id.
    pub id: String,
    /// Container name (without the leading `/`).
    pub name: String,
    /// The endpoint it was on.
    pub endpoint: String,
    /// Its run, if it had one.
    pub run_id: Option<String>,
    /// Why.
    pub reason: ReapReason,
}

/// What one [`DockerRuntime::reap_with`] (or [`DockerRuntime::shutdown`]) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReapReport {
    /// Containers removed.
    pub containers: Vec<Reaped>,
    /// Sandbox networks removed (older versions gave each sandbox one).
    pub networks: Vec<String>,
    /// Warm-pool slots released (their container was gone).
    pub slots: Vec<PathBuf>,
    /// What could not be removed, and why; the next pass tries again.
    pub errors: Vec<String>,
}

impl ReapReport {
    /// Whether nothing was removed and nothing failed.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.slots.is_empty() && self.errors.is_empty()
    }

    /// The port's report: run sandboxes (orphan, idle, too old) under
    /// `sandboxes`; pool entries, forwarders, networks and slots described
    /// under `other`.
    pub fn into_port(self) -> paid_core::ReapReport {
        let mut port = paid_core::ReapReport { errors: self.errors, ..Default::default() };
        for reaped in self.containers {
            match reaped.reason {
                ReapReason::Orphan | ReapReason::TooOld | ReapReason::Idle => port.sandboxes.push(reaped.id),
                reason => port.other.push(format!("container {} ({reason:?}) on {}", reaped.id, reaped.endpoint)),
            }
        }
        port.other.extend(self.networks.into_iter().map(|n| format!("network {n}")));
        port.other.extend(self.slots.into_iter().map(|s| format!("pool slot {}", s.display())));
        port
    }
}

/// What a listed container is, for the reaper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A run's sandbox (cold or claimed), with its run if known.
    Sandbox { run_id: Option<String> },
    /// An unclaimed pooled sandbox; `held` when this runtime's pool holds it.
    PoolEntry { held: bool },
}

/// The reaper's decision before looking inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Leave it.
    Keep,
    /// Remove it.
    Reap(ReapReason),
    /// Remove it if it has been idle for too long.
    CheckIdle,
}

/// Decides from what the listing tells: kind and age.
pub(crate) fn verdict(kind: &Kind, age: Duration, policy: &ReapPolicy) -> Verdict {
    if age < policy.grace {
        return Verdict::Keep;
    }
    match kind {
        Kind::PoolEntry { held: true } => Verdict::Keep,
        Kind::PoolEntry { held: false } if age > policy.idle_after => Verdict::Reap(ReapReason::AbandonedPoolEntry),
        Kind::PoolEntry { held: false } => Verdict::Keep,
        Kind::Sandbox { run_id: None } => Verdict::Reap(ReapReason::Orphan),
        Kind::Sandbox { run_id: Some(run) } => {
            if policy.live_runs.as_ref().is_some_and(|live| !live.contains(run)) {
                Verdict::Reap(ReapReason::Orphan)
            } else if age > policy.max_age {
                Verdict::Reap(ReapReason::TooOld)
            } else {
                Verdict::CheckIdle
            }
        }
    }
}

/// What the activity probe found in a running sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    /// An exec is running.
    Busy,
    /// The last exec started or ended at this Unix time.
    LastAt(u64),
    /// No exec ever ran.
    Never,
}

/// Prints `busy` when an exec runs, else the activity file's modification
/// time, else `none`. Shell builtins and `stat` only.
///
/// After every exec the runtime kills every process of the sandbox user
/// (the init and keepalive run as another user), so any process the probe,
/// as the sandbox user, may signal besides itself is an exec's: `kill -0`
/// on each pid in `/proc` tells, and no file the sandbox wrote is read.
pub(crate) fn activity_probe() -> String {
    format!(
        "for d in /proc/[0-9]*; do p=${{d#/proc/}}; [ \"$p\" = $$ ] || [ \"$p\" = 1 ] && continue; \
         kill -0 \"$p\" 2>/dev/null && {{ echo busy; exit 0; }}; done; \
         stat -c %Y {ACTIVITY_FILE} 2>/dev/null || echo none"
    )
}

/// Reads the output of [`activity_probe`].
pub(crate) fn parse_activity(text: &str) -> Option<Activity> {
    match text.trim() {
        "busy" => Some(Activity::Busy),
        "none" => Some(Activity::Never),
        secs => secs.parse().ok().map(Activity::LastAt),
    }
}

/// How long a sandbox has been idle, `None` when busy; `age` counts from
/// when its run got it.
pub(crate) fn idle_for(activity: Activity, now: u64, age: Duration) -> Option<Duration> {
    match activity {
        Activity::Busy => None,
        Activity::LastAt(at) => Some(Duration::from_secs(now.saturating_sub(at))),
        Activity::Never => Some(age),
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Seconds since the Unix epoch of an engine timestamp (RFC 3339).
fn unix_of(stamp: &str) -> Option<u64> {
    chrono::DateTime::parse_from_rfc3339(stamp).ok().and_then(|t| u64::try_from(t.timestamp()).ok())
}

impl DockerRuntime {
    /// Removes orphaned, idle, too old and abandoned sandboxes, orphan
    /// pool slots and older versions' sandbox networks, on every endpoint, as the
    /// [module docs](crate::ReapPolicy) describe; reports what it removed.
    /// Never touches a container without the `<prefix>.managed=true` label.
    ///
    /// Failures to remove one thing are collected in
    /// [`ReapReport::errors`] and the pass goes on.
    ///
    /// # Errors
    ///
    /// When an endpoint cannot list its containers or networks.
    ///
    /// The [`SandboxRuntime::reap`](paid_core::SandboxRuntime::reap) of the
    /// port calls this with the request's keep-set as
    /// [`live_runs`](ReapPolicy::live_runs), its `min_age` as
    /// [`grace`](ReapPolicy::grace) and the other thresholds from
    /// [`DockerConfig::reaper`](crate::DockerConfig::reaper).
    pub async fn reap_with(&self, policy: &ReapPolicy) -> Result<ReapReport> {
        Ok(self.reap_inner(policy).await?)
    }

    async fn reap_inner(&self, policy: &ReapPolicy) -> Result<ReapReport, DockerError> {
        let shared = self.shared();
        let config = &shared.config;
        let label = |name: &str| config.label(name);
        let mut report = ReapReport::default();
        let now = unix_now();

        // This runtime's own stale pool entries: replace them.
        if let Some(pool) = &shared.pool {
            for entry in pool.take_stale() {
                let reaped = Reaped {
                    id: entry.id.clone(),
                    name: String::new(),
                    endpoint: shared.endpoints[entry.endpoint].name.to_string(),
                    run_id: None,
                    reason: ReapReason::StalePoolEntry,
                };
                match shared.destroy(entry).await {
                    Ok(()) => report.containers.push(reaped),
                    Err(e) => report.errors.push(format!("{}: {e}", reaped.id)),
                }
            }
            for key in pool.all_keys() {
                shared.refill(&key);
            }
        }

        let listed_at = std::time::Instant::now();
        let listed = shared.list_all().await?;
        // Sandboxes removed behind this runtime's back are forgotten (and
        // counted down) here.
        let ids: HashSet<String> = listed.iter().filter_map(|(_, s)| s.id.clone()).collect();
        for gone in shared.forget_missing(&ids, listed_at) {
            tracing::debug!(sandbox = %gone, "tracked sandbox is gone");
        }
        let mut live_ids: HashSet<String> = HashSet::new();
        let mut forwarders: HashSet<String> = HashSet::new();
        for (endpoint, summary) in &listed {
            let id = summary.id.clone().unwrap_or_default();
            let labels = summary.labels.clone().unwrap_or_default();
            let role = labels.get(&label("role")).map(String::as_str).unwrap_or(role::SANDBOX);
            if role == role::FORWARDER {
                forwarders.insert(id);
                continue;
            }
            let age = Duration::from_secs(summary.created.map_or(0, |c| now.saturating_sub(c.max(0) as u64)));
            let info = sandbox_info(config, summary.clone());
            let kind = if labels.contains_key(&label("pool.slot")) && info.run_id.is_none() {
                Kind::PoolEntry { held: shared.pool.as_ref().is_some_and(|p| p.holds(&id)) }
            } else {
                Kind::Sandbox { run_id: info.run_id.clone() }
            };
            let reason = match verdict(&kind, age, policy) {
                Verdict::Keep => None,
                Verdict::Reap(reason) => Some(reason),
                Verdict::CheckIdle => {
                    let running = summary.state == Some(ContainerSummaryStateEnum::RUNNING);
                    // A claimed pooled sandbox is new to its run since the
                    // claim, when its slot record was written.
                    let claimed = labels.get(&label("pool.slot")).and_then(|slot| {
                        let written = std::fs::metadata(pool::record_path(std::path::Path::new(slot))).ok()?;
                        written.modified().ok()?.elapsed().ok()
                    });
                    let age = claimed.map_or(age, |since| since.min(age));
                    match self.idle(endpoint, &id, running, now, age).await {
                        Ok(Some(idle)) if idle > policy.idle_after => Some(ReapReason::Idle),
                        Ok(_) => None,
                        Err(e) => {
                            report.errors.push(format!("{id}: cannot tell whether it is idle: {e}"));
                            None
                        }
                    }
                }
            };
            let Some(reason) = reason else {
                live_ids.insert(id);
                continue;
            };
            let name = summary.names.iter().flatten().next().map(|n| n.trim_start_matches('/').to_string());
            match shared.remove_sandbox(&id).await {
                Ok(_) => {
                    tracing::info!(sandbox = %id, ?reason, endpoint = %endpoint.name, "reaped");
                    report.containers.push(Reaped {
                        id,
                        name: name.unwrap_or_default(),
                        endpoint: endpoint.name.to_string(),
                        run_id: info.run_id,
                        reason,
                    });
                }
                Err(e) => {
                    report.errors.push(format!("{id}: {e}"));
                    live_ids.insert(id);
                }
            }
        }

        self.reap_networks(policy, &forwarders, now, &mut report).await?;
        self.reap_slots(policy, &live_ids, &mut report).await;
        Ok(report)
    }

    /// How long sandbox `id` has been idle (`None`: busy).
    async fn idle(
        &self,
        endpoint: &Arc<Endpoint>,
        id: &str,
        running: bool,
        now: u64,
        age: Duration,
    ) -> Result<Option<Duration>, DockerError> {
        if !running {
            let inspect = endpoint
                .docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
                .map_err(endpoint.api("inspect container"))?;
            let finished = inspect.state.and_then(|s| s.finished_at).as_deref().and_then(unix_of);
            return Ok(Some(finished.map_or(age, |at| Duration::from_secs(now.saturating_sub(at)))));
        }
        let target = endpoint.target(&self.shared().config, id);
        let (_, out) = run_captured(&target, vec!["sh".into(), "-c".into(), activity_probe()]).await?;
        let text = String::from_utf8_lossy(&out);
        let activity = parse_activity(&text).ok_or_else(|| DockerError::Exec {
            id: id.to_string(),
            message: format!("unexpected activity probe output {text:?}"),
        })?;
        Ok(idle_for(activity, now, age))
    }

    /// Removes the sandbox networks older versions made, once no container
    /// but a forwarder is on them.
    async fn reap_networks(
        &self,
        policy: &ReapPolicy,
        forwarders: &HashSet<String>,
        now: u64,
        report: &mut ReapReport,
    ) -> Result<(), DockerError> {
        let config = &self.shared().config;
        let filters = HashMap::from([(
            "label",
            vec![format!("{}=true", config.managed_label()), format!("{}={}", config.label("role"), role::SANDBOX_NET)],
        )]);
        let mut seen = HashSet::new();
        for endpoint in &self.shared().endpoints {
            let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
            let networks = endpoint.docker.list_networks(Some(options)).await.map_err(endpoint.api("list networks"))?;
            for network in networks {
                let (Some(id), Some(name)) = (network.id, network.name) else { continue };
                let created = network.created.as_deref().and_then(unix_of).unwrap_or(now);
                if !seen.insert(id.clone()) || Duration::from_secs(now.saturating_sub(created)) < policy.grace {
                    continue;
                }
                let inspect = match endpoint.docker.inspect_network(&id, None::<InspectNetworkOptions>).await {
                    Ok(inspect) => inspect,
                    Err(e) => {
                        report.errors.push(format!("network {name}: {e}"));
                        continue;
                    }
                };
                let members = inspect.containers.unwrap_or_default();
                if members.keys().any(|c| !forwarders.contains(c)) {
                    continue;
                }
                match remove_network(endpoint, &id, members.into_keys()).await {
                    Ok(()) => {
                        tracing::info!(network = %name, endpoint = %endpoint.name, "reaped an old sandbox network");
                        report.networks.push(name);
                    }
                    Err(e) => report.errors.push(format!("network {name}: {e}")),
                }
            }
        }
        Ok(())
    }

    /// Releases pool slots whose container is gone.
    async fn reap_slots(&self, policy: &ReapPolicy, live_ids: &HashSet<String>, report: &mut ReapReport) {
        let Some(root) = self.shared().pool.as_ref().and_then(|p| p.root()) else { return };
        let live = live_ids.clone();
        // A slot is taken before its container exists: the configured
        // grace holds whatever the caller's.
        let grace = policy.grace.max(Duration::from_secs(self.shared().config.reaper.grace_secs));
        let outcome = blocking(move || {
            let mut released = Vec::new();
            let Ok(entries) = std::fs::read_dir(&root) else { return Ok(released) };
            for entry in entries.flatten() {
                let slot = entry.path();
                let young = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_none_or(|age| age < grace);
                if young || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let record = pool::read_record(&slot)?;
                if record.as_ref().is_some_and(|r| live.contains(&r.container)) {
                    continue;
                }
                let origin = record.and_then(|r| r.origin);
                let done = pool::detach(&slot, origin.as_deref())?;
                if done == Detached::Restored {
                    tracing::info!(slot = %slot.display(), "gave an orphaned worktree its directory back");
                }
                released.push(slot);
            }
            Ok(released)
        })
        .await;
        match outcome {
            Ok(released) => report.slots.extend(released),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
}

/// Disconnects `members` from `network` and removes it; a missing network
/// is fine.
async fn remove_network(
    endpoint: &Endpoint,
    network: &str,
    members: impl Iterator<Item = String>,
) -> Result<(), DockerError> {
    for container in members {
        let request = NetworkDisconnectRequest { container, force: Some(true) };
        let _ = endpoint.docker.disconnect_network(network, request).await;
    }
    match endpoint.docker.remove_network(network).await {
        Ok(()) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        Err(e) => Err(endpoint.api("remove network")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReapPolicy {
        ReapPolicy {
            live_runs: Some(HashSet::from(["live".to_string()])),
            idle_after: Duration::from_secs(1800),
            max_age: Duration::from_secs(86_400),
            grace: Duration::from_secs(60),
        }
    }

    fn sandbox(run: Option<&str>) -> Kind {
        Kind::Sandbox { run_id: run.map(str::to_string) }
    }

    #[test]
    fn verdicts_follow_the_policy() {
        let min = |m: u64| Duration::from_secs(m * 60);
        let cases = [
            (sandbox(Some("gone")), min(0), Verdict::Keep),
            (sandbox(Some("gone")), min(2), Verdict::Reap(ReapReason::Orphan)),
            (sandbox(None), min(2), Verdict::Reap(ReapReason::Orphan)),
            (sandbox(Some("live")), min(2), Verdict::CheckIdle),
            (sandbox(Some("live")), min(25 * 60), Verdict::Reap(ReapReason::TooOld)),
            (Kind::PoolEntry { held: true }, min(25 * 60), Verdict::Keep),
            (Kind::PoolEntry { held: false }, min(29), Verdict::Keep),
            (Kind::PoolEntry { held: false }, min(31), Verdict::Reap(ReapReason::AbandonedPoolEntry)),
        ];
        for (kind, age, want) in cases {
            assert_eq!(verdict(&kind, age, &policy()), want, "{kind:?} aged {age:?}");
        }
        let unchecked = ReapPolicy { live_runs: None, ..policy() };
        assert_eq!(verdict(&sandbox(Some("any")), min(2), &unchecked), Verdict::CheckIdle);
    }

    #[test]
    fn activity_is_read_from_the_probe() {
        assert_eq!(parse_activity("busy\n"), Some(Activity::Busy));
        assert_eq!(parse_activity("none\n"), Some(Activity::Never));
        assert_eq!(parse_activity("1700000000\n"), Some(Activity::LastAt(1_700_000_000)));
        assert_eq!(parse_activity("stat: oops"), None);
        let age = Duration::from_secs(500);
        assert_eq!(idle_for(Activity::Busy, 1_000, age), None);
        assert_eq!(idle_for(Activity::LastAt(400), 1_000, age), Some(Duration::from_secs(600)));
        assert_eq!(idle_for(Activity::LastAt(2_000), 1_000, age), Some(Duration::ZERO), "clock skew");
        assert_eq!(idle_for(Activity::Never, 1_000, age), Some(age));
        let probe = activity_probe();
        assert!(probe.contains("kill -0") && !probe.contains(".pid"), "no pid file decides: {probe}");
        assert_eq!(unix_of("2024-01-01T00:00:00.123456789Z"), Some(1_704_067_200));
        assert_eq!(unix_of("0001-01-01T00:00:00Z"), None, "the engine's zero time");
    }
}
