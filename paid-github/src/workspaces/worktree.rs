//! Run worktrees: creation on a branch, commits, changed paths, removal.
//!
//! A run's worktree is a git worktree of the project's mirror, named after
//! the run id, at `worktrees/<run_id>`. Its branch lives in the mirror, so
//! commits made in the worktree can be pushed from the mirror.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use git2::{Oid, Repository, Signature, StatusOptions, WorktreeAddOptions, WorktreePruneOptions};

use super::mirror::{REMOTE, default_tip};
use super::push::lease_ref;
use crate::error::{Error, Result};

/// What [`create`] needs.
pub(crate) struct Create<'a> {
    pub mirror: &'a Path,
    pub repo_name: &'a str,
    pub path: &'a Path,
    pub name: &'a str,
    pub branch: &'a str,
    pub default_branch: &'a str,
}

/// Creates (or finds) the worktree. Returns the base commit.
///
/// The branch is reused when it exists in the mirror, created from the
/// remote's branch of the same name when only that exists (a follow-up run
/// on a fresh host), and otherwise created from the default branch.
pub(crate) fn create(req: &Create<'_>) -> Result<String> {
    let local_ref = branch_ref(req.branch)?;
    let mirror = Repository::open_bare(req.mirror).map_err(Error::git("open mirror", req.mirror))?;
    let tip = default_tip(&mirror, req.repo_name, req.default_branch)?;

    if let Ok(existing) = mirror.find_worktree(req.name) {
        if existing.validate().is_ok() && req.path.is_dir() {
            let wt = open(req.path, req.name, req.mirror)?;
            let head = wt.head().map_err(Error::git("read worktree HEAD", req.path))?;
            if head.name().ok() != Some(local_ref.as_str()) {
                return Err(Error::InvalidInput {
                    what: "worktree",
                    message: format!(
                        "the worktree at {} is on {}, not {}",
                        req.path.display(),
                        head.name().unwrap_or("a detached HEAD"),
                        local_ref
                    ),
                });
            }
            let head_oid = head.target().ok_or_else(|| detached(req.path))?;
            return Ok(base(&mirror, head_oid, tip).to_string());
        }
        // Left behind by a crash: drop the stale metadata and start over.
        existing
            .prune(Some(WorktreePruneOptions::new().valid(true).working_tree(true)))
            .map_err(Error::git("prune stale worktree", req.mirror))?;
    }
    if req.path.exists() {
        std::fs::remove_dir_all(req.path).map_err(Error::io("remove stale worktree directory", req.path))?;
    }
    if let Some(parent) = req.path.parent() {
        private_dir(parent)?;
    }

    let branch_oid = match mirror.refname_to_id(&local_ref) {
        Ok(oid) => oid,
        Err(_) => {
            let from_remote = mirror.refname_to_id(&format!("refs/remotes/{REMOTE}/{}", req.branch)).ok();
            let start = from_remote.unwrap_or(tip);
            mirror
                .reference(&local_ref, start, false, "paid: run branch")
                .map_err(Error::git("create branch", req.mirror))?;
            if let Some(remote) = from_remote {
                // What we saw on the remote: pushing over it later is allowed.
                mirror
                    .reference(&lease_ref(req.branch), remote, true, "paid: lease")
                    .map_err(Error::git("record lease", req.mirror))?;
            }
            start
        }
    };
    let reference = mirror.find_reference(&local_ref).map_err(Error::git("find branch", req.mirror))?;
    let mut opts = WorktreeAddOptions::new();
    opts.reference(Some(&reference));
    mirror.worktree(req.name, req.path, Some(&opts)).map_err(Error::git("add worktree", req.path))?;
    Ok(base(&mirror, branch_oid, tip).to_string())
}

/// Where the branch forked from the default branch (the branch head itself
/// when the histories are unrelated).
fn base(repo: &Repository, branch: Oid, default_tip: Oid) -> Oid {
    repo.merge_base(branch, default_tip).unwrap_or(branch)
}

/// Creates `dir` (and its parents) and makes it `0700`: the sandbox writes
/// world-writable files into worktrees (its umask is `0000`), so no other
/// user of the host may reach them.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).map_err(Error::io("read directory mode", dir))?.permissions().mode();
        if mode & 0o777 != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(Error::io("make directory private (0700)", dir))?;
        }
    }
    Ok(())
}

/// The worktree's administrative directory in its mirror.
pub(crate) fn admin_dir(mirror: &Path, name: &str) -> PathBuf {
    mirror.join("worktrees").join(name)
}

/// Opens the run's worktree through the mirror's record of it, never through
/// the worktree's `.git` file: that file sits in the sandbox's writable
/// mount, so an agent could point it at a repository of its own (whose
/// `core.worktree` could, say, make a commit pick up host files, or whose
/// refs could hide changes from the policy check). The `.git` file is put
/// back to what it must be, and a change to it is logged.
pub(crate) fn open(path: &Path, name: &str, mirror: &Path) -> Result<Repository> {
    let bare = Repository::open_bare(mirror).map_err(Error::git("open mirror", mirror))?;
    let record = bare.find_worktree(name).map_err(Error::git("find worktree in mirror", mirror))?;
    let admin = admin_dir(mirror, name);
    restore_gitlink(path, &admin)?;
    let repo = Repository::open_from_worktree(&record).map_err(Error::git("open worktree", path))?;
    repo.set_workdir(path, false).map_err(Error::git("set worktree directory", path))?;
    Ok(repo)
}

/// Makes `<path>/.git` the file `gitdir: <admin>` again if it is anything
/// else (another target, a directory, a symlink, missing).
pub(crate) fn restore_gitlink(path: &Path, admin: &Path) -> Result<()> {
    use std::io::Write;

    let link = path.join(".git");
    let what = match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_file() => {
            let points_home = m.len() < 4096
                && std::fs::read_to_string(&link).is_ok_and(|s| {
                    s.trim().strip_prefix("gitdir:").is_some_and(|target| Path::new(target.trim()) == admin)
                });
            if points_home {
                return Ok(());
            }
            std::fs::remove_file(&link).map_err(Error::io("remove tampered .git file", &link))?;
            "rewritten"
        }
        Ok(m) if m.file_type().is_dir() => {
            std::fs::remove_dir_all(&link).map_err(Error::io("remove .git directory planted in worktree", &link))?;
            "a directory"
        }
        Ok(_) => {
            std::fs::remove_file(&link).map_err(Error::io("remove .git link planted in worktree", &link))?;
            "a symlink"
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing",
        Err(e) => return Err(Error::Io { op: "inspect worktree .git", path: link, source: e }),
    };
    tracing::warn!(
        worktree = %path.display(),
        found = what,
        "the worktree's .git did not point at its mirror (changed inside the sandbox?); restored it"
    );
    // `create_new` never follows a symlink planted in the meantime.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&link)
        .map_err(Error::io("restore worktree .git file", &link))?;
    // The form libgit2 writes: an absolute path with a trailing slash.
    file.write_all(format!("gitdir: {}/\n", admin.display()).as_bytes())
        .map_err(Error::io("restore worktree .git file", &link))?;
    Ok(())
}

/// `refs/heads/{branch}`, checked.
pub(crate) fn branch_ref(branch: &str) -> Result<String> {
    let r = format!("refs/heads/{branch}");
    if branch.is_empty() || !git2::Reference::is_valid_name(&r) {
        return Err(Error::InvalidInput { what: "branch", message: format!("{branch:?} is not a valid branch name") });
    }
    Ok(r)
}

fn detached(path: &Path) -> Error {
    Error::InvalidInput { what: "worktree", message: format!("{} has no branch checked out", path.display()) }
}

/// Whether a file still holds git's conflict markers: a line starting with
/// `<<<<<<< ` or `>>>>>>> ` (the `=======` line alone is too common).
fn has_conflict_markers(bytes: &[u8]) -> bool {
    bytes.split(|b| *b == b'\n').any(|line| line.starts_with(b"<<<<<<< ") || line.starts_with(b">>>>>>> "))
}

/// Stages everything (additions, edits, deletions; ignored files stay out)
/// and commits. `None` when the tree did not change.
///
/// In the middle of a merge (left by a rebase that conflicted), the files
/// as they are resolve the conflicts and the commit is the merge commit,
/// made even when the tree equals HEAD's.
pub(crate) fn commit_all(
    repo: &Repository,
    path: &Path,
    message: &str,
    (name, email): (&str, &str),
    limits: &paid_core::WorktreeLimits,
) -> Result<Option<String>> {
    let merging = super::rebase::merge_heads(repo, path)?;
    let mut index = repo.index().map_err(Error::git("read index", path))?;
    if index.has_conflicts() {
        // The working files are the resolution: stage each conflicted path
        // as it is now (or its deletion).
        let mut conflicted = Vec::new();
        for conflict in index.conflicts().map_err(Error::git("read conflicts", path))? {
            let conflict = conflict.map_err(Error::git("read conflicts", path))?;
            if let Some(entry) = conflict.our.or(conflict.their).or(conflict.ancestor) {
                conflicted.push(PathBuf::from(String::from_utf8_lossy(&entry.path).into_owned()));
            }
        }
        let unresolved: Vec<String> = conflicted
            .iter()
            .filter(|p| {
                super::snapshot::read_capped(path, p, limits.file_bytes).is_some_and(|b| has_conflict_markers(&b))
            })
            .map(|p| p.display().to_string())
            .collect();
        if !unresolved.is_empty() {
            return Err(Error::InvalidInput {
                what: "merge resolution",
                message: format!("conflict markers are still in {}; nothing was committed", unresolved.join(", ")),
            });
        }
        // The files as they are now (or their deletion) resolve each
        // conflict: staging below takes them.
        for p in conflicted {
            index.conflict_remove(&p).map_err(Error::git("resolve conflict", path))?;
        }
    }
    // Everything is read before the index is written: a refusal (a limit,
    // an unsafe entry) leaves it as it was.
    if let Err(e) = super::snapshot::stage(repo, path, &mut index, limits) {
        index.read(true).map_err(Error::git("reread index", path))?;
        return Err(e);
    }
    index.write().map_err(Error::git("write index", path))?;
    let tree_id = index.write_tree().map_err(Error::git("write tree", path))?;
    let parent = repo.head().and_then(|h| h.peel_to_commit()).map_err(Error::git("read HEAD", path))?;
    if parent.tree_id() == tree_id && merging.is_empty() {
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id).map_err(Error::git("read tree", path))?;
    let sig = Signature::now(name, email).map_err(|e| Error::InvalidInput {
        what: "commit author",
        message: format!("{name:?} <{email}>: {}", e.message()),
    })?;
    let mut parents = vec![parent];
    for oid in &merging {
        parents.push(repo.find_commit(*oid).map_err(Error::git("read merged commit", path))?);
    }
    let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
    let id = repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents).map_err(Error::git("commit", path))?;
    if !merging.is_empty() {
        repo.cleanup_state().map_err(Error::git("finish merge", path))?;
    }
    Ok(Some(id.to_string()))
}

/// Paths changed between `base` and HEAD, plus uncommitted and untracked
/// ones; relative, `/`-separated, sorted, without duplicates.
pub(crate) fn changed_paths(repo: &Repository, path: &Path, base: &str) -> Result<Vec<String>> {
    let mut paths = BTreeSet::new();
    let base_oid = Oid::from_str(base).map_err(|e| Error::InvalidInput {
        what: "worktree.base_commit",
        message: format!("{base:?}: {}", e.message()),
    })?;
    let base_tree = repo.find_commit(base_oid).and_then(|c| c.tree()).map_err(Error::git("read base commit", path))?;
    let head_tree = repo.head().and_then(|h| h.peel_to_tree()).map_err(Error::git("read HEAD", path))?;
    let diff = repo.diff_tree_to_tree(Some(&base_tree), Some(&head_tree), None).map_err(Error::git("diff", path))?;
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(p) = file.path() {
                paths.insert(slashed(p));
            }
        }
    }
    let mut opts = StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true).include_ignored(false).include_unmodified(false);
    let statuses = repo.statuses(Some(&mut opts)).map_err(Error::git("status", path))?;
    for entry in statuses.iter() {
        if let Ok(p) = entry.path() {
            paths.insert(p.to_string());
        }
        for delta in [entry.head_to_index(), entry.index_to_workdir()].into_iter().flatten() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(p) = file.path() {
                    paths.insert(slashed(p));
                }
            }
        }
    }
    Ok(paths.into_iter().collect())
}

/// Lines added plus removed between `base` and HEAD.
pub(crate) fn lines_changed(repo: &Repository, path: &Path, base: &str) -> Result<u64> {
    let base_oid = Oid::from_str(base).map_err(|e| Error::InvalidInput {
        what: "worktree.base_commit",
        message: format!("{base:?}: {}", e.message()),
    })?;
    let base_tree = repo.find_commit(base_oid).and_then(|c| c.tree()).map_err(Error::git("read base commit", path))?;
    let head_tree = repo.head().and_then(|h| h.peel_to_tree()).map_err(Error::git("read HEAD", path))?;
    let diff = repo.diff_tree_to_tree(Some(&base_tree), Some(&head_tree), None).map_err(Error::git("diff", path))?;
    let stats = diff.stats().map_err(Error::git("diff stats", path))?;
    Ok((stats.insertions() + stats.deletions()) as u64)
}

fn slashed(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

/// Removes the worktree directory and its metadata in the mirror
/// (`mirrors` is searched when the directory is already gone). Idempotent.
pub(crate) fn remove(path: &Path, name: &str, mirrors: &Path) -> Result<()> {
    // Found from the mirrors, never from the worktree's (sandbox-writable) `.git` file.
    let mirror = find_mirror_of(mirrors, name);
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(Error::io("remove worktree", path))?;
    }
    if let Some(mirror) = mirror {
        let repo = Repository::open_bare(&mirror).map_err(Error::git("open mirror", &mirror))?;
        if let Ok(wt) = repo.find_worktree(name) {
            wt.prune(Some(WorktreePruneOptions::new().valid(true))).map_err(Error::git("prune worktree", &mirror))?;
        }
    }
    Ok(())
}

/// The mirror whose worktree metadata names `name`.
pub(crate) fn find_mirror_of(mirrors: &Path, name: &str) -> Option<PathBuf> {
    all_mirrors(mirrors).into_iter().find(|m| m.join("worktrees").join(name).is_dir())
}

/// Every `mirrors/<owner>/<name>.git`.
pub(crate) fn all_mirrors(mirrors: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for owner in read_dirs(mirrors) {
        out.extend(read_dirs(&owner).into_iter().filter(|p| p.extension().is_some_and(|e| e == "git")));
    }
    out
}

pub(crate) fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

/// How long ago the worktree was created: the age of the `commondir` file in
/// its record in the mirror, which `git worktree add` writes once and the
/// sandbox cannot touch (else of its `.git` file; the directory's own time
/// changes with every file the agent adds at the top level).
pub(crate) fn age(path: &Path, mirrors: &Path) -> Duration {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let record = find_mirror_of(mirrors, name).map(|m| admin_dir(&m, name).join("commondir"));
    let modified = record
        .map_or_else(|| std::fs::metadata(path.join(".git")), std::fs::metadata)
        .or_else(|_| std::fs::metadata(path.join(".git")))
        .or_else(|_| std::fs::metadata(path))
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    SystemTime::now().duration_since(modified).unwrap_or_default()
}

/// Prunes worktree metadata whose directory is gone, in every mirror.
pub(crate) fn prune_stale(mirrors: &Path) {
    for mirror in all_mirrors(mirrors) {
        let Ok(repo) = Repository::open_bare(&mirror) else { continue };
        let Ok(names) = repo.worktrees() else { continue };
        for name in names.iter().flatten().flatten() {
            if let Ok(wt) = repo.find_worktree(name)
                && wt.validate().is_err()
                && let Err(e) = wt.prune(None)
            {
                tracing::warn!(mirror = %mirror.display(), worktree = name, error = %e, "could not prune worktree metadata");
            }
        }
    }
}
