//! The per-project mirror: a bare clone, fetched before each run.
//!
//! The remote's branches are kept under `refs/remotes/origin/*` rather than
//! mirrored onto `refs/heads/*`: run branches live in `refs/heads/paid/*` of
//! the same repository (worktrees share its refs), and a fetch must never
//! move or prune a branch a run is working on.

use std::path::Path;

use git2::build::RepoBuilder;
use git2::{AutotagOption, FetchOptions, FetchPrune, Repository};

use super::credentials::{Auth, NO_REDIRECTS, redact};
use super::progress::ProgressFn;
use crate::error::{Error, Result};

/// Where the remote's branches land in the mirror.
pub(crate) const FETCH_REFSPEC: &str = "+refs/heads/*:refs/remotes/origin/*";
/// The mirror's one remote.
pub(crate) const REMOTE: &str = "origin";

/// Clones `url` into `path` (bare), or fetches if `path` is already a
/// mirror, reporting transfer progress to `progress` if given.
pub(crate) fn ensure(path: &Path, url: &str, auth: &Auth, progress: Option<&ProgressFn>) -> Result<()> {
    let clone_err = |e: git2::Error| Error::Clone { url: redact(url), message: redact(e.message()) };
    if path.exists() {
        let repo = Repository::open_bare(path).map_err(Error::git("open mirror", path))?;
        match repo.find_remote(REMOTE) {
            Ok(r) if r.url().ok() == Some(url) => {}
            Ok(_) => repo.remote_set_url(REMOTE, url).map_err(Error::git("set mirror url", path))?,
            Err(_) => {
                repo.remote_with_fetch(REMOTE, url, FETCH_REFSPEC).map_err(Error::git("add mirror remote", path))?;
            }
        }
        let mut remote = repo.find_remote(REMOTE).map_err(Error::git("open mirror remote", path))?;
        let mut opts = fetch_options(auth, progress);
        remote.fetch::<&str>(&[], Some(&mut opts), Some("paid: fetch")).map_err(clone_err)?;
        return Ok(());
    }
    let parent = path.parent().unwrap_or(path);
    std::fs::create_dir_all(parent).map_err(Error::io("create mirror directory", parent))?;
    // Clone next to the final place, then rename: a crash mid-clone leaves
    // no half-made mirror behind.
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{file_name}.tmp-{}-{}", std::process::id(), nanos()));
    let cloned = RepoBuilder::new()
        .bare(true)
        .fetch_options(fetch_options(auth, progress))
        .remote_create(|repo, name, url| repo.remote_with_fetch(name, url, FETCH_REFSPEC))
        .clone(url, &tmp);
    match cloned {
        Ok(repo) => drop(repo),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(clone_err(e));
        }
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another process finished the same clone first: theirs is as good.
        if !path.exists() {
            return Err(Error::Io { op: "move mirror into place", path: path.to_path_buf(), source: e });
        }
    }
    Ok(())
}

fn fetch_options<'a>(auth: &'a Auth, progress: Option<&'a ProgressFn>) -> FetchOptions<'a> {
    let mut callbacks = auth.callbacks();
    if let Some(report) = progress {
        callbacks.transfer_progress(move |p| {
            report(p.into());
            true
        });
    }
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks)
        .prune(FetchPrune::On)
        .download_tags(AutotagOption::All)
        .follow_redirects(NO_REDIRECTS);
    opts
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

/// The commit the project's default branch points at in the mirror.
pub(crate) fn default_tip(repo: &Repository, repo_name: &str, default_branch: &str) -> Result<git2::Oid> {
    [format!("refs/remotes/{REMOTE}/{default_branch}"), format!("refs/heads/{default_branch}")]
        .iter()
        .find_map(|r| repo.refname_to_id(r).ok())
        .ok_or_else(|| Error::InvalidInput {
            what: "project.default_branch",
            message: format!("branch {default_branch:?} does not exist in {repo_name}"),
        })
}
