//! Reading a worktree the agent had, without trusting it.
//!
//! The engine stops a run's sandbox before the host commits, so nothing
//! changes the worktree while it is read. Staging still assumes the worst
//! about what was left behind:
//! - nothing is followed: entries are listed with `lstat`, files are opened
//!   with `O_NOFOLLOW` (a symlink swapped in fails the open) and
//!   `O_NONBLOCK` (a FIFO swapped in cannot hang the read), and must still
//!   be regular files once open;
//! - symlinks are committed as links, and refused when their target leaves
//!   the worktree; FIFOs, sockets and devices are refused;
//! - bytes are stored as they are: no worktree filter (`.gitattributes`
//!   `ident`, `text`, `eol`) runs;
//! - the [`WorktreeLimits`] apply before anything is read, from the sizes
//!   `lstat` reports (a sparse file counts at its full length), and a read
//!   never takes more than the per-file cap.
//!
//! What git ignores is skipped, unless it is tracked.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use git2::{Index, IndexEntry, IndexTime, Repository};
use paid_core::WorktreeLimits;

use crate::error::{Error, Result};

const MODE_FILE: u32 = 0o100_644;
const MODE_EXEC: u32 = 0o100_755;
const MODE_LINK: u32 = 0o120_000;
const MODE_GITLINK: u32 = 0o160_000;

/// One entry the walk found.
struct Found {
    rel: PathBuf,
    meta: Metadata,
}

/// The entries a commit would take (what is not ignored, plus what is
/// tracked), counted against `limits` as they are found.
fn walk(repo: &Repository, root: &Path, tracked: &BTreeSet<PathBuf>, limits: &WorktreeLimits) -> Result<Vec<Found>> {
    let mut tally = limits.tally();
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let abs = root.join(&dir);
        let entries = match std::fs::read_dir(&abs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("list worktree", &abs)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io("list worktree", &abs))?;
            if entry.file_name() == ".git" {
                continue;
            }
            let rel = dir.join(entry.file_name());
            let meta = match std::fs::symlink_metadata(root.join(&rel)) {
                Ok(meta) => meta,
                // Gone since it was listed: there is nothing to take.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("lstat", root.join(&rel))(e)),
            };
            let is_tracked = tracked.contains(&rel);
            if meta.is_dir() {
                let holds_tracked = tracked.range(rel.clone()..).next().is_some_and(|t| t.starts_with(&rel));
                if holds_tracked || !ignored(repo, &rel, true) {
                    dirs.push(rel);
                }
                continue;
            }
            if !is_tracked && ignored(repo, &rel, false) {
                continue;
            }
            tally.add(&rel, meta.len()).map_err(limit)?;
            found.push(Found { rel, meta });
        }
    }
    Ok(found)
}

fn ignored(repo: &Repository, rel: &Path, dir: bool) -> bool {
    // libgit2 tells a directory by its trailing slash.
    let probe = if dir { PathBuf::from(format!("{}/", rel.display())) } else { rel.to_path_buf() };
    repo.is_path_ignored(&probe).unwrap_or(false)
}

fn limit(e: paid_core::Error) -> Error {
    match e {
        paid_core::Error::WorktreeLimit(message) => Error::WorktreeLimit { message },
        other => Error::WorktreeLimit { message: other.to_string() },
    }
}

/// The index's stage-0 entries by path.
fn tracked_entries(index: &Index) -> BTreeMap<PathBuf, IndexEntry> {
    index
        .iter()
        .filter(|e| (e.flags >> 12) & 0x3 == 0)
        .map(|e| (PathBuf::from(std::ffi::OsStr::from_bytes(&e.path)), e))
        .collect()
}

/// Checks the worktree against `limits` without reading a file.
pub(crate) fn check(repo: &Repository, root: &Path, limits: &WorktreeLimits) -> Result<()> {
    let index = repo.index().map_err(Error::git("read index", root))?;
    let tracked: BTreeSet<PathBuf> = tracked_entries(&index).into_keys().collect();
    walk(repo, root, &tracked, limits).map(|_| ())
}

/// Makes the index hold exactly what the worktree holds (see the module
/// docs), or fails without changing it.
pub(crate) fn stage(repo: &Repository, root: &Path, index: &mut Index, limits: &WorktreeLimits) -> Result<()> {
    let before = tracked_entries(index);
    let tracked: BTreeSet<PathBuf> = before.keys().cloned().collect();
    let found = walk(repo, root, &tracked, limits)?;
    let mut entries = Vec::with_capacity(found.len());
    for f in &found {
        if before.get(&f.rel).is_some_and(|e| e.mode == MODE_GITLINK) {
            continue;
        }
        let (mode, bytes, meta) = read_entry(root, f, limits)?;
        let id = repo.blob(&bytes).map_err(Error::git("write blob", root.join(&f.rel)))?;
        entries.push(entry(&f.rel, mode, id, &meta));
    }
    let present: BTreeSet<&Path> = found.iter().map(|f| f.rel.as_path()).collect();
    for (path, e) in &before {
        if e.mode != MODE_GITLINK && !present.contains(path.as_path()) {
            index.remove_path(path).map_err(Error::git("stage deletion", root.join(path)))?;
        }
    }
    for e in entries {
        index.add(&e).map_err(Error::git("stage change", root))?;
    }
    Ok(())
}

/// An entry's mode, bytes and metadata, read without following anything.
fn read_entry(root: &Path, f: &Found, limits: &WorktreeLimits) -> Result<(u32, Vec<u8>, Metadata)> {
    let abs = root.join(&f.rel);
    let unsafe_entry = |reason: &str| Error::Unsafe { path: f.rel.display().to_string(), reason: reason.to_string() };
    let kind = f.meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(&abs).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => unsafe_entry("stopped being a symlink while read"),
            _ => Error::io("read symlink", &abs)(e),
        })?;
        if escapes(&f.rel, &target) {
            return Err(unsafe_entry(&format!("a symlink to {}, outside the worktree", target.display())));
        }
        return Ok((MODE_LINK, target.as_os_str().as_bytes().to_vec(), f.meta.clone()));
    }
    if !kind.is_file() {
        return Err(unsafe_entry("not a regular file, directory or symlink (a FIFO, socket or device)"));
    }
    let file = read_only(&abs).map_err(|e| match e.raw_os_error() {
        Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => unsafe_entry("became a symlink while read"),
        _ => Error::io("open", &abs)(e),
    })?;
    let meta = file.metadata().map_err(Error::io("fstat", &abs))?;
    if !meta.is_file() {
        return Err(unsafe_entry("became something other than a regular file while read"));
    }
    let mut tally = limits.tally();
    tally.add(&f.rel, meta.len()).map_err(limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limits.file_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(Error::io("read", &abs))?;
    tally.add(&f.rel, bytes.len() as u64).map_err(limit)?;
    let mode = if meta.mode() & 0o111 != 0 { MODE_EXEC } else { MODE_FILE };
    Ok((mode, bytes, meta))
}

/// Opens `path` for reading, refusing a symlink and never blocking on a
/// FIFO.
fn read_only(path: &Path) -> std::io::Result<File> {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    std::fs::OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(path)
}

/// Reads a file of the worktree (at most `max` bytes) the way staging
/// does: no symlink followed, regular files only.
pub(crate) fn read_capped(root: &Path, rel: &Path, max: u64) -> Option<Vec<u8>> {
    let file = read_only(&root.join(rel)).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Whether the link at `rel` (relative to the worktree) pointing at
/// `target` resolves outside the worktree (lexically: every link on the
/// way is itself checked when it is staged).
fn escapes(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    let mut depth: usize = rel.parent().map_or(0, |p| p.components().count());
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

fn entry(rel: &Path, mode: u32, id: git2::Oid, meta: &Metadata) -> IndexEntry {
    let path = rel.as_os_str().as_bytes().to_vec();
    let time = |secs: i64, nanos: i64| IndexTime::new(secs as i32, nanos as u32);
    IndexEntry {
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        dev: meta.dev() as u32,
        ino: meta.ino() as u32,
        mode,
        uid: meta.uid(),
        gid: meta.gid(),
        file_size: meta.len() as u32,
        id,
        flags: path.len().min(0xfff) as u16,
        flags_extended: 0,
        path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_that_leave_the_worktree_are_told_apart() {
        let at = |rel: &str, target: &str| escapes(Path::new(rel), Path::new(target));
        assert!(!at("a", "b"));
        assert!(!at("dir/a", "../b"));
        assert!(!at("dir/sub/a", "../../b"));
        assert!(!at("a", "./dir/../b"));
        assert!(at("a", "../b"));
        assert!(at("dir/a", "../../b"));
        assert!(at("a", "/etc/passwd"));
        assert!(at("a", "dir/../../b"));
    }
}
