//! Bringing a run's branch up to date with the default branch, for a
//! follow-up run.
//!
//! The branch's own commits (those not on the default branch) are replayed
//! one by one on the default branch's tip, in memory (`cherrypick_commit`):
//! nothing in the worktree changes until every commit replayed cleanly, then
//! the branch is moved and checked out. When a commit conflicts, or the
//! branch holds merge commits (an earlier conflict resolution), the branch is
//! left as it is and the default branch's tip is *merged* into the worktree
//! instead: a clean merge is committed at once, a conflicting one is left
//! mid-merge (conflict markers in the files, `MERGE_HEAD` in the worktree's
//! record in the mirror) for the agent to resolve, and
//! [`super::worktree::commit_all`] then makes the merge commit. Either way the
//! branch ends up containing the default branch's tip, so the pull request
//! merges cleanly.
//!
//! Before anything, the branch is fast-forwarded to the remote's copy of it
//! when that copy only adds commits (a reviewer pushed a fix): those commits
//! are built on, and become the push lease.

use std::collections::BTreeSet;
use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{Commit, Oid, Repository, RepositoryState, Signature, Sort, StatusOptions};
use paid_core::RebaseOutcome;

use super::mirror::{REMOTE, default_tip};
use super::push::lease_ref;
use super::worktree::branch_ref;
use crate::error::{Error, Result};

/// What [`rebase`] needs.
pub(crate) struct Rebase<'a> {
    /// The opened worktree.
    pub repo: &'a Repository,
    /// Its path, for errors.
    pub path: &'a Path,
    /// `owner/name`, for errors.
    pub repo_name: &'a str,
    /// The run's branch.
    pub branch: &'a str,
    /// The project's default branch.
    pub default_branch: &'a str,
}

/// Brings the worktree's branch up to date with the default branch's tip in
/// the (already fetched) mirror.
pub(crate) fn rebase(req: &Rebase<'_>) -> Result<RebaseOutcome> {
    let (repo, path) = (req.repo, req.path);
    let tip = default_tip(repo, req.repo_name, req.default_branch)?;
    if repo.state() == RepositoryState::Merge {
        // An earlier call left the merge for the agent: report it again.
        let onto = merge_heads(repo, path)?.first().copied().unwrap_or(tip);
        return Ok(RebaseOutcome::Conflicts { onto: onto.to_string(), paths: conflicted(repo, path)? });
    }
    if repo.state() != RepositoryState::Clean {
        return Err(Error::InvalidInput {
            what: "worktree",
            message: format!("{} is in the middle of a git operation ({:?})", path.display(), repo.state()),
        });
    }
    ensure_clean(repo, path)?;

    let local_ref = branch_ref(req.branch)?;
    let head = repo.refname_to_id(&local_ref).map_err(Error::git("find branch", path))?;
    let mut local = head;
    if let Ok(remote) = repo.refname_to_id(&format!("refs/remotes/{REMOTE}/{}", req.branch))
        && remote != local
        && repo.graph_descendant_of(remote, local).map_err(Error::git("compare with remote branch", path))?
    {
        // Someone added commits on the remote branch: build on them.
        local = remote;
        repo.reference(&lease_ref(req.branch), remote, true, "paid: lease")
            .map_err(Error::git("record lease", path))?;
    }
    if local == tip || repo.graph_descendant_of(local, tip).map_err(Error::git("compare with default", path))? {
        if local != head {
            move_branch(repo, path, &local_ref, local, "paid: fast-forward to remote")?;
        }
        return Ok(RebaseOutcome::UpToDate);
    }

    let commits = own_commits(repo, path, local, tip)?;
    if !commits.iter().any(|c| c.parent_count() > 1)
        && let Some(rebased) = replay(repo, path, &commits, tip)?
    {
        move_branch(repo, path, &local_ref, rebased, &format!("paid: rebase onto {}", req.default_branch))?;
        return Ok(RebaseOutcome::Rebased { onto: tip.to_string() });
    }
    if local != head {
        move_branch(repo, path, &local_ref, local, "paid: fast-forward to remote")?;
    }
    merge(repo, path, local, tip, req.default_branch, req.branch)
}

/// Refuses a worktree with uncommitted changes: replaying would lose them.
fn ensure_clean(repo: &Repository, path: &Path) -> Result<()> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true).include_ignored(false);
    let statuses = repo.statuses(Some(&mut opts)).map_err(Error::git("status", path))?;
    if let Some(entry) = statuses.iter().next() {
        return Err(Error::InvalidInput {
            what: "worktree",
            message: format!(
                "{} has uncommitted changes (e.g. {:?}); commit them before rebasing",
                path.display(),
                entry.path().unwrap_or("?")
            ),
        });
    }
    Ok(())
}

/// The commits on `local` that `tip` lacks, oldest first.
fn own_commits<'r>(repo: &'r Repository, path: &Path, local: Oid, tip: Oid) -> Result<Vec<Commit<'r>>> {
    let mut walk = repo.revwalk().map_err(Error::git("walk history", path))?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE).map_err(Error::git("walk history", path))?;
    walk.push(local).map_err(Error::git("walk history", path))?;
    walk.hide(tip).map_err(Error::git("walk history", path))?;
    walk.map(|oid| oid.and_then(|o| repo.find_commit(o)))
        .collect::<Result<_, _>>()
        .map_err(Error::git("walk history", path))
}

/// Replays `commits` on `tip` in memory. `None` when one conflicts.
fn replay(repo: &Repository, path: &Path, commits: &[Commit<'_>], tip: Oid) -> Result<Option<Oid>> {
    let mut current = repo.find_commit(tip).map_err(Error::git("read default branch", path))?;
    for commit in commits {
        let mut index = repo.cherrypick_commit(commit, &current, 0, None).map_err(Error::git("replay commit", path))?;
        if index.has_conflicts() {
            return Ok(None);
        }
        let tree_id = index.write_tree_to(repo).map_err(Error::git("write replayed tree", path))?;
        if tree_id == current.tree_id() {
            continue; // already on the default branch
        }
        let tree = repo.find_tree(tree_id).map_err(Error::git("read replayed tree", path))?;
        let committer = now_as(&commit.committer());
        let message = commit.message_raw().unwrap_or_default();
        let id = repo
            .commit(None, &commit.author(), &committer, message, &tree, &[&current])
            .map_err(Error::git("write replayed commit", path))?;
        current = repo.find_commit(id).map_err(Error::git("read replayed commit", path))?;
    }
    Ok(Some(current.id()))
}

/// `who`, with the current time (a replayed or merge commit is committed now).
fn now_as(who: &Signature<'_>) -> Signature<'static> {
    let (name, email) = (who.name().unwrap_or("Paid"), who.email().unwrap_or("paid@localhost"));
    Signature::now(name, email).unwrap_or_else(|_| who.to_owned())
}

/// Points the branch (checked out in the worktree) at `to` and makes the
/// worktree and index match it.
fn move_branch(repo: &Repository, path: &Path, local_ref: &str, to: Oid, why: &str) -> Result<()> {
    repo.reference(local_ref, to, true, why).map_err(Error::git("move branch", path))?;
    repo.checkout_head(Some(CheckoutBuilder::new().force())).map_err(Error::git("check out branch", path))
}

/// Merges `tip` into the worktree: committed when clean, left for the agent
/// with conflict markers otherwise.
fn merge(
    repo: &Repository,
    path: &Path,
    local: Oid,
    tip: Oid,
    default_branch: &str,
    branch: &str,
) -> Result<RebaseOutcome> {
    let theirs = repo.find_annotated_commit(tip).map_err(Error::git("read default branch", path))?;
    let mut checkout = CheckoutBuilder::new();
    checkout.allow_conflicts(true).conflict_style_merge(true);
    repo.merge(&[&theirs], None, Some(&mut checkout)).map_err(Error::git("merge default branch", path))?;
    let mut index = repo.index().map_err(Error::git("read index", path))?;
    if index.has_conflicts() {
        return Ok(RebaseOutcome::Conflicts { onto: tip.to_string(), paths: conflicted(repo, path)? });
    }
    let tree_id = index.write_tree().map_err(Error::git("write merged tree", path))?;
    let tree = repo.find_tree(tree_id).map_err(Error::git("read merged tree", path))?;
    let ours = repo.find_commit(local).map_err(Error::git("read branch", path))?;
    let theirs = repo.find_commit(tip).map_err(Error::git("read default branch", path))?;
    let sig = now_as(&ours.committer());
    let message = format!("Merge branch '{default_branch}' into {branch}\n");
    repo.commit(Some("HEAD"), &sig, &sig, &message, &tree, &[&ours, &theirs])
        .map_err(Error::git("commit merge", path))?;
    repo.cleanup_state().map_err(Error::git("finish merge", path))?;
    Ok(RebaseOutcome::Rebased { onto: tip.to_string() })
}

/// The commits a merge in progress is merging (`MERGE_HEAD` in the
/// worktree's record in the mirror, out of the sandbox's reach).
pub(crate) fn merge_heads(repo: &Repository, path: &Path) -> Result<Vec<Oid>> {
    if repo.state() != RepositoryState::Merge {
        return Ok(Vec::new());
    }
    // `mergehead_foreach` needs a mutable handle: open one of our own.
    let mut own = Repository::open(repo.path()).map_err(Error::git("open worktree", path))?;
    let mut heads = Vec::new();
    own.mergehead_foreach(|oid| {
        heads.push(*oid);
        true
    })
    .map_err(Error::git("read MERGE_HEAD", path))?;
    Ok(heads)
}

/// The index's conflicted paths, sorted.
fn conflicted(repo: &Repository, path: &Path) -> Result<Vec<String>> {
    let index = repo.index().map_err(Error::git("read index", path))?;
    let mut paths = BTreeSet::new();
    for conflict in index.conflicts().map_err(Error::git("read conflicts", path))? {
        let conflict = conflict.map_err(Error::git("read conflicts", path))?;
        if let Some(entry) = conflict.our.or(conflict.their).or(conflict.ancestor) {
            paths.insert(String::from_utf8_lossy(&entry.path).into_owned());
        }
    }
    Ok(paths.into_iter().collect())
}
