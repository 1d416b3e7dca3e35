//! [`GitWorkspaces`]: the [`Workspaces`] port on libgit2 (git2).
//!
//! Layout under the configured root:
//!
//! ```text
//! <root>/mirrors/<owner>/<name>.git   bare clone per project (remote branches in refs/remotes/origin/*)
//! <root>/worktrees/<run_id>           one git worktree of that mirror per run
//! ```
//!
//! `mirrors/` and `worktrees/` are mode `0700`: the sandbox writes
//! world-writable files (its umask is `0000`), which no other host user may
//! reach. A worktree's `.git` file is in the sandbox's mount, so it is never
//! trusted: host-side commits, diffs and pushes open the worktree through the
//! mirror's record of it and restore the file (see `worktree::open`).
//!
//! Every git2 call runs on tokio's blocking pool, never on the runtime's
//! workers. Operations on one mirror are serialized by an in-process lock;
//! two processes sharing a root are not coordinated.
//!
//! Credentials: the token source's current token (read at the start of each
//! fetch and push, see [`GitWorkspacesConfig::token_source`]) is handed to
//! libgit2 from a credentials callback. It is never written into a remote
//! URL, the mirror's config or anything a sandbox can read. It is pinned to
//! the forge's web origin ([`GitWorkspacesConfig::forge_origin`], default
//! `https://github.com`): the callback refuses every other URL, including
//! the target of a redirect, plain http (but to a loopback origin) and
//! ssh; and libgit2 follows no redirect to another host name. A project's
//! clone URL must be on the forge's host or one of the project's
//! `allowed_clone_hosts` (which are cloned from without the token), else
//! fetches and pushes fail before connecting
//! ([`paid_core::Project::validate_clone_url`]).
//!
//! Metrics: with [`GitWorkspacesConfig::metrics`], the workspaces keep
//! `paid_worktrees{project_id}` current themselves, recounting a project's
//! worktrees (the records in its mirror whose directory exists) after every
//! create, remove and sweep. Projects are known from `ensure_mirror` and
//! `create_worktree` calls in this process.
//!
//! Transports: git2 is built with its `https` feature (OpenSSL), so clone
//! URLs may be `https://` (GitHub), plain `http://`, local paths or
//! `file://`. There is no ssh transport: tokens travel as HTTP basic auth.

mod credentials;
mod mirror;
mod progress;
mod push;
mod rebase;
mod snapshot;
mod worktree;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use paid_core::metrics::{Metrics, ProjectLabels};
use paid_core::{
    CommitRequest, Project, ProjectId, RebaseOutcome, RepoRef, RunId, Workspaces, Worktree, WorktreeRequest,
};
use secrecy::SecretString;

use crate::error::{Error, Result};
use crate::forge::token::{NoToken, TokenSource};
use crate::origin::WebOrigin;
pub(crate) use credentials::redact;
use credentials::{Auth, DEFAULT_USERNAME};
pub use progress::CloneProgress;

/// Where workspaces live and how to authenticate to remotes.
///
/// ```
/// use paid_github::{GitWorkspacesConfig, WebOrigin};
///
/// // A GitHub Enterprise Server: the token goes to https://ghe.example.com only.
/// let config = GitWorkspacesConfig::new("/var/lib/paid/git")
///     .token("ghs_example".to_string().into())
///     .forge_origin(WebOrigin::from_api_base("https://ghe.example.com/api/v3")?);
/// assert!(config.root().ends_with("git"));
/// assert_eq!(config.origin().to_string(), "https://ghe.example.com");
/// # Ok::<(), paid_github::Error>(())
/// ```
#[derive(Clone)]
pub struct GitWorkspacesConfig {
    root: PathBuf,
    token: Arc<dyn TokenSource>,
    username: String,
    metrics: Option<Arc<Metrics>>,
    origin: WebOrigin,
}

impl std::fmt::Debug for GitWorkspacesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitWorkspacesConfig")
            .field("root", &self.root)
            .field("username", &self.username)
            .field("origin", &self.origin.to_string())
            .field("token", &self.token.token().map(|_| "[redacted]"))
            .finish()
    }
}

impl GitWorkspacesConfig {
    /// Workspaces under `root`, without credentials.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            token: Arc::new(NoToken),
            username: DEFAULT_USERNAME.into(),
            metrics: None,
            origin: WebOrigin::github(),
        }
    }

    /// The forge's web origin (default `https://github.com`): the only
    /// place the token is sent, and the host clone URLs must be on unless a
    /// project allowlists another. Derive it from the forge's API URL with
    /// [`WebOrigin::from_api_base`].
    pub fn forge_origin(mut self, origin: WebOrigin) -> Self {
        self.origin = origin;
        self
    }

    /// The forge's web origin.
    pub fn origin(&self) -> &WebOrigin {
        &self.origin
    }

    /// Exports `paid_worktrees{project_id}` on `metrics`, kept current on
    /// every create, remove and sweep.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// A token for fetch and push over https, sent as the password of HTTP
    /// basic auth (GitHub's way for installation and personal tokens), to
    /// the [forge's origin](Self::forge_origin) only.
    pub fn token(self, token: SecretString) -> Self {
        self.token_source(Arc::new(token))
    }

    /// Where the token comes from, read at the start of each fetch and push
    /// (e.g. the [`SharedToken`](crate::SharedToken) the forge reads too).
    /// Replaces [`Self::token`].
    pub fn token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.token = source;
        self
    }

    /// The username sent with the token (default `x-access-token`).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = username.into();
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The [`Workspaces`] on git2. Cheap to share behind an `Arc`.
pub struct GitWorkspaces {
    root: PathBuf,
    token: std::sync::RwLock<Arc<dyn TokenSource>>,
    username: String,
    origin: WebOrigin,
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    metrics: Option<Arc<Metrics>>,
    /// Mirror path -> project, for the worktree gauge.
    projects: Mutex<HashMap<PathBuf, ProjectId>>,
}

impl std::fmt::Debug for GitWorkspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitWorkspaces").field("root", &self.root).field("auth", &self.auth()).finish_non_exhaustive()
    }
}

impl GitWorkspaces {
    /// Workspaces for `config`. Does no I/O; directories are made on demand.
    pub fn new(config: GitWorkspacesConfig) -> Self {
        let root = std::path::absolute(&config.root).unwrap_or(config.root);
        Self {
            root,
            token: std::sync::RwLock::new(config.token),
            username: config.username,
            origin: config.origin,
            locks: Mutex::new(HashMap::new()),
            metrics: config.metrics,
            projects: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers `project`'s mirror for the worktree gauge.
    fn know(&self, project: &Project, mirror: &Path) {
        if self.metrics.is_some() {
            self.projects
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(mirror.to_path_buf(), project.id);
        }
    }

    /// Recounts every known project's worktrees into `paid_worktrees`.
    async fn export_worktrees(&self) {
        let Some(metrics) = self.metrics.clone() else { return };
        let known: Vec<(PathBuf, ProjectId)> = self
            .projects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(m, p)| (m.clone(), *p))
            .collect();
        let dir = self.worktrees_dir();
        let counted = blocking("count worktrees", move || {
            Ok(known
                .into_iter()
                .map(|(mirror, project)| {
                    let n = worktree::read_dirs(&mirror.join("worktrees"))
                        .iter()
                        .filter_map(|record| record.file_name())
                        .filter(|name| dir.join(name).is_dir())
                        .count();
                    (project, i64::try_from(n).unwrap_or(i64::MAX))
                })
                .collect::<Vec<_>>())
        })
        .await;
        match counted {
            Ok(counts) => {
                for (project, n) in counts {
                    metrics.worktrees.get_or_create(&ProjectLabels { project_id: project.to_string() }).set(n);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot count worktrees"),
        }
    }

    /// Replaces the token source with a fixed token for fetches and pushes
    /// from now on (e.g. after the operator rotated it); operations under
    /// way keep the old one. With a [`SharedToken`](crate::SharedToken) as
    /// the source, setting that is enough.
    pub fn set_token(&self, token: Option<SecretString>) {
        let source: Arc<dyn TokenSource> = match token {
            Some(t) => Arc::new(t),
            None => Arc::new(NoToken),
        };
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = source;
    }

    /// The credentials for one operation: the source's current token.
    fn auth(&self) -> Arc<Auth> {
        let token = self.token.read().unwrap_or_else(|p| p.into_inner()).token();
        Arc::new(Auth { token, username: self.username.clone(), origin: self.origin.clone() })
    }

    /// The project's clone URL, checked against the forge's host and the
    /// project's `allowed_clone_hosts` before anything connects.
    fn clone_url(&self, project: &Project) -> Result<String> {
        project.validate_clone_url(self.origin.host()).map_err(|e| match e {
            paid_core::Error::InvalidInput { message, .. } => {
                Error::InvalidInput { what: "project.clone_url", message }
            }
            other => Error::InvalidInput { what: "project.clone_url", message: other.to_string() },
        })?;
        Ok(project.clone_url.clone())
    }

    /// Where run branches are pushed: the fork's URL when the project has a
    /// `push_remote` (its `push_url`, else `<origin>/<fork>.git`), else the
    /// clone URL. Checked by the same host rules.
    fn push_url(&self, project: &Project) -> Result<String> {
        let clone_url = self.clone_url(project)?;
        Ok(match (project.push_fork(), &project.settings.push_url) {
            (Some(_), Some(url)) => url.clone(),
            (Some(fork), None) => self.origin.clone_url(&fork),
            (None, _) => clone_url,
        })
    }

    /// The root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the project's mirror lives.
    pub fn mirror_path(&self, repo: &RepoRef) -> Result<PathBuf> {
        Ok(self
            .mirrors_dir()
            .join(segment("repository owner", &repo.owner)?)
            .join(format!("{}.git", segment("repository name", &repo.name)?)))
    }

    /// Where the run's worktree lives.
    pub fn worktree_path(&self, run_id: RunId) -> PathBuf {
        self.worktrees_dir().join(run_id.to_string())
    }

    fn mirrors_dir(&self) -> PathBuf {
        self.root.join("mirrors")
    }

    fn worktrees_dir(&self) -> PathBuf {
        self.root.join("worktrees")
    }

    fn lock_for(&self, mirror: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(mirror.to_path_buf()).or_default().clone()
    }

    /// The worktree's path, checked to be one of ours.
    fn own(&self, worktree: &Worktree) -> Result<PathBuf> {
        let dir = self.worktrees_dir();
        let path = std::path::absolute(&worktree.path).unwrap_or_else(|_| worktree.path.clone());
        if path.parent() != Some(dir.as_path()) {
            return Err(Error::ForeignWorktree { path, root: dir });
        }
        Ok(path)
    }

    async fn ensure_mirror(&self, project: &Project) -> Result<()> {
        self.mirror_with(project, None).await.map(|_| ())
    }

    /// Clones or fetches the project's mirror under its lock, reporting
    /// transfer progress to `progress` if given. Returns the mirror's path.
    async fn mirror_with(&self, project: &Project, progress: Option<progress::ProgressFn>) -> Result<PathBuf> {
        let path = self.mirror_path(&project.repo)?;
        let url = self.clone_url(project)?;
        let dirs = [self.mirrors_dir(), self.worktrees_dir()];
        blocking("create directories", move || dirs.iter().try_for_each(|d| worktree::private_dir(d))).await?;
        self.know(project, &path);
        let lock = self.lock_for(&path);
        let _guard = lock.lock().await;
        let (auth, at) = (self.auth(), path.clone());
        blocking("fetch", move || mirror::ensure(&at, &url, &auth, progress.as_ref())).await?;
        Ok(path)
    }

    async fn create_worktree(&self, req: &WorktreeRequest<'_>) -> Result<Worktree> {
        let mirror_path = self.mirror_path(&req.project.repo)?;
        if !mirror_path.exists() {
            return Err(Error::MirrorMissing { repo: req.project.repo.to_string(), path: mirror_path });
        }
        self.know(req.project, &mirror_path);
        let lock = self.lock_for(&mirror_path);
        let guard = lock.lock().await;
        let path = self.worktree_path(req.run_id);
        let (branch, default_branch) = (req.branch.to_string(), req.project.default_branch.clone());
        let (repo_name, name) = (req.project.repo.to_string(), req.run_id.to_string());
        let wt_path = path.clone();
        let base_commit = blocking("create worktree", move || {
            worktree::create(&worktree::Create {
                mirror: &mirror_path,
                repo_name: &repo_name,
                path: &wt_path,
                name: &name,
                branch: &branch,
                default_branch: &default_branch,
            })
        })
        .await?;
        drop(guard);
        self.export_worktrees().await;
        Ok(Worktree { run_id: req.run_id, path, branch: req.branch.to_string(), base_commit })
    }

    async fn commit_all(&self, req: &CommitRequest<'_>) -> Result<Option<String>> {
        let path = self.own(req.worktree)?;
        let (message, name, email) =
            (req.message.to_string(), req.author_name.to_string(), req.author_email.to_string());
        let (this, run_id, limits) = (self.opener(), req.worktree.run_id, req.limits);
        blocking("commit", move || {
            let repo = this.open_worktree(&path, run_id)?;
            worktree::commit_all(&repo, &path, &message, (&name, &email), &limits)
        })
        .await
    }

    /// Counts what a commit would take (ignored files are not counted),
    /// without reading any file: [`Error::WorktreeLimit`] at the first cap
    /// crossed.
    async fn check_limits(&self, wt: &Worktree, limits: &paid_core::WorktreeLimits) -> Result<()> {
        let path = self.own(wt)?;
        let (this, run_id, limits) = (self.opener(), wt.run_id, *limits);
        blocking("check worktree limits", move || {
            let repo = this.open_worktree(&path, run_id)?;
            snapshot::check(&repo, &path, &limits)
        })
        .await
    }

    async fn changed_paths(&self, wt: &Worktree) -> Result<Vec<String>> {
        let path = self.own(wt)?;
        let base = wt.base_commit.clone();
        let (this, run_id) = (self.opener(), wt.run_id);
        blocking("changed paths", move || {
            let repo = this.open_worktree(&path, run_id)?;
            worktree::changed_paths(&repo, &path, &base)
        })
        .await
    }

    /// Lines added plus removed by the branch's commits since the
    /// worktree's base commit.
    async fn lines_changed(&self, wt: &Worktree) -> Result<u64> {
        let path = self.own(wt)?;
        let base = wt.base_commit.clone();
        let (this, run_id) = (self.opener(), wt.run_id);
        blocking("lines changed", move || {
            let repo = this.open_worktree(&path, run_id)?;
            worktree::lines_changed(&repo, &path, &base)
        })
        .await
    }

    async fn push(&self, project: &Project, wt: &Worktree) -> Result<()> {
        let mirror_path = self.mirror_path(&project.repo)?;
        if !mirror_path.exists() {
            return Err(Error::MirrorMissing { repo: project.repo.to_string(), path: mirror_path });
        }
        // The push reads only the mirror, but leave no tampered `.git` behind.
        let path = self.own(wt)?;
        let (name, admin_mirror) = (wt.run_id.to_string(), mirror_path.clone());
        blocking("check worktree", move || {
            if path.is_dir() && admin_mirror.join("worktrees").join(&name).is_dir() {
                worktree::restore_gitlink(&path, &worktree::admin_dir(&admin_mirror, &name))?;
            }
            Ok(())
        })
        .await?;
        let lock = self.lock_for(&mirror_path);
        let _guard = lock.lock().await;
        let (url, branch, auth) = (self.push_url(project)?, wt.branch.clone(), self.auth());
        blocking("push", move || push::push(&mirror_path, &url, &branch, &auth)).await
    }

    async fn rebase(&self, project: &Project, wt: &Worktree) -> Result<RebaseOutcome> {
        let path = self.own(wt)?;
        // Fetch first: the default branch (and the run's branch) as the remote has them now.
        self.ensure_mirror(project).await?;
        let mirror_path = self.mirror_path(&project.repo)?;
        let lock = self.lock_for(&mirror_path);
        let _guard = lock.lock().await;
        let (branch, default_branch) = (wt.branch.clone(), project.default_branch.clone());
        let repo_name = project.repo.to_string();
        let (this, run_id) = (self.opener(), wt.run_id);
        blocking("rebase", move || {
            let repo = this.open_worktree(&path, run_id)?;
            rebase::rebase(&rebase::Rebase {
                repo: &repo,
                path: &path,
                repo_name: &repo_name,
                branch: &branch,
                default_branch: &default_branch,
            })
        })
        .await
    }

    /// What blocking tasks need to open worktrees.
    fn opener(&self) -> Opener {
        Opener { root: self.root.clone() }
    }

    async fn remove(&self, wt: &Worktree) -> Result<()> {
        let path = self.own(wt)?;
        let (name, mirrors) = (wt.run_id.to_string(), self.mirrors_dir());
        blocking("remove worktree", move || worktree::remove(&path, &name, &mirrors)).await?;
        self.export_worktrees().await;
        Ok(())
    }

    async fn sweep(&self, keep: &[RunId], older_than: chrono::Duration) -> Result<Vec<PathBuf>> {
        let older_than = older_than.to_std().unwrap_or_default();
        let keep: Vec<String> = keep.iter().map(ToString::to_string).collect();
        let (dir, mirrors) = (self.worktrees_dir(), self.mirrors_dir());
        let removed = blocking("sweep worktrees", move || {
            let mut removed = Vec::new();
            for path in worktree::read_dirs(&dir) {
                let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
                // Only directories named like a run id are ours to remove.
                if RunId::parse(&name).is_err() || keep.contains(&name) || worktree::age(&path, &mirrors) < older_than {
                    continue;
                }
                worktree::remove(&path, &name, &mirrors)?;
                removed.push(path);
            }
            worktree::prune_stale(&mirrors);
            Ok(removed)
        })
        .await;
        self.export_worktrees().await;
        removed
    }
}

#[async_trait]
impl Workspaces for GitWorkspaces {
    async fn ensure_mirror(&self, project: &Project) -> paid_core::Result<()> {
        Ok(GitWorkspaces::ensure_mirror(self, project).await?)
    }

    async fn create_worktree(&self, req: &WorktreeRequest<'_>) -> paid_core::Result<Worktree> {
        Ok(GitWorkspaces::create_worktree(self, req).await?)
    }

    async fn commit_all(&self, req: &CommitRequest<'_>) -> paid_core::Result<Option<String>> {
        Ok(GitWorkspaces::commit_all(self, req).await?)
    }

    async fn check_limits(&self, worktree: &Worktree, limits: &paid_core::WorktreeLimits) -> paid_core::Result<()> {
        Ok(GitWorkspaces::check_limits(self, worktree, limits).await?)
    }

    async fn changed_paths(&self, worktree: &Worktree) -> paid_core::Result<Vec<String>> {
        Ok(GitWorkspaces::changed_paths(self, worktree).await?)
    }

    async fn lines_changed(&self, worktree: &Worktree) -> paid_core::Result<Option<u64>> {
        Ok(Some(GitWorkspaces::lines_changed(self, worktree).await?))
    }

    async fn rebase(&self, project: &Project, worktree: &Worktree) -> paid_core::Result<RebaseOutcome> {
        Ok(GitWorkspaces::rebase(self, project, worktree).await?)
    }

    async fn push(&self, project: &Project, worktree: &Worktree) -> paid_core::Result<()> {
        Ok(GitWorkspaces::push(self, project, worktree).await?)
    }

    async fn remove(&self, worktree: &Worktree) -> paid_core::Result<()> {
        Ok(GitWorkspaces::remove(self, worktree).await?)
    }

    async fn sweep_orphans(&self, keep: &[RunId], older_than: chrono::Duration) -> paid_core::Result<Vec<PathBuf>> {
        Ok(self.sweep(keep, older_than).await?)
    }
}

/// Opens worktrees in blocking tasks (owns the paths it needs).
struct Opener {
    root: PathBuf,
}

impl Opener {
    fn open_worktree(&self, path: &Path, run_id: RunId) -> Result<git2::Repository> {
        let name = run_id.to_string();
        let mirrors = self.root.join("mirrors");
        let mirror = worktree::find_mirror_of(&mirrors, &name)
            .ok_or_else(|| Error::ForeignWorktree { path: path.to_path_buf(), root: self.root.join("worktrees") })?;
        worktree::open(path, &name, &mirror)
    }
}

/// Runs blocking git work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(op: &'static str, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Task { op, message: e.to_string() })?
}

/// `s` if it is usable as one directory name.
fn segment<'a>(what: &'static str, s: &'a str) -> Result<&'a str> {
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\', '\0']) {
        return Err(Error::InvalidInput { what, message: format!("{s:?} cannot name a directory") });
    }
    Ok(s)
}
