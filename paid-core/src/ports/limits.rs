//! [`WorktreeLimits`]: what a run's worktree may hold, checked while the
//! agent runs ([`Workspaces::check_limits`](crate::Workspaces::check_limits))
//! and again when the host commits it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Caps on a worktree's files (DESIGN: bounded worktrees). Sizes are
/// apparent sizes (`st_size`), so a sparse file counts at its full length.
/// What git ignores is not counted: build output is the disk guard's
/// concern, and never reaches a commit.
///
/// ```
/// use paid_core::WorktreeLimits;
///
/// let limits = WorktreeLimits::default();
/// assert_eq!((limits.total_bytes, limits.file_bytes, limits.files), (1 << 30, 100 << 20, 100_000));
/// let mut tally = limits.tally();
/// assert!(tally.add("a.txt".as_ref(), 10).is_ok());
/// let err = tally.add("huge.bin".as_ref(), 2 << 30).unwrap_err();
/// assert_eq!(err.code(), "worktree_limit");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorktreeLimits {
    /// All files together, in bytes. Default 1 GiB.
    pub total_bytes: u64,
    /// One file, in bytes. Default 100 MiB.
    pub file_bytes: u64,
    /// Files (and symlinks). Default 100 000.
    pub files: u64,
}

impl Default for WorktreeLimits {
    fn default() -> Self {
        Self { total_bytes: 1 << 30, file_bytes: 100 << 20, files: 100_000 }
    }
}

impl WorktreeLimits {
    /// A running count against these limits.
    pub fn tally(&self) -> WorktreeTally {
        WorktreeTally { limits: *self, files: 0, bytes: 0 }
    }

    /// Checks that none is zero.
    pub fn validate(&self) -> crate::Result<()> {
        if self.total_bytes == 0 || self.file_bytes == 0 || self.files == 0 {
            return Err(Error::InvalidInput {
                what: "worktree limits".into(),
                message: "total_bytes, file_bytes and files must be above 0".into(),
            });
        }
        Ok(())
    }
}

/// Files and bytes counted so far; [`add`](Self::add) fails with
/// [`Error::WorktreeLimit`] at the first file that crosses a limit.
#[derive(Debug, Clone)]
pub struct WorktreeTally {
    limits: WorktreeLimits,
    files: u64,
    bytes: u64,
}

impl WorktreeTally {
    /// Counts one file of `size` bytes at `path` (relative to the worktree).
    pub fn add(&mut self, path: &Path, size: u64) -> crate::Result<()> {
        let l = &self.limits;
        if size > l.file_bytes {
            return Err(Error::WorktreeLimit(format!(
                "{} is {size} bytes, over the {} bytes a file may have",
                path.display(),
                l.file_bytes
            )));
        }
        self.files += 1;
        self.bytes = self.bytes.saturating_add(size);
        if self.files > l.files {
            return Err(Error::WorktreeLimit(format!("the worktree holds more than {} files", l.files)));
        }
        if self.bytes > l.total_bytes {
            return Err(Error::WorktreeLimit(format!("the worktree holds more than {} bytes", l.total_bytes)));
        }
        Ok(())
    }

    /// Files counted.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// Bytes counted.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Walks `root` without following symlinks or reading any file, counting
/// every file and symlink (the `.git` entry at the root excepted): the
/// default [`Workspaces::check_limits`](crate::Workspaces::check_limits),
/// for backends that cannot tell what is ignored.
pub fn check_tree(root: &Path, limits: &WorktreeLimits) -> crate::Result<WorktreeTally> {
    let mut tally = limits.tally();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Gone meanwhile (the agent deleted it): nothing to count.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::permanent(
                    "filesystem",
                    std::io::Error::new(e.kind(), format!("reading {}: {e}", dir.display())),
                ));
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if dir == root && entry.file_name() == ".git" {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                dirs.push(path);
            } else {
                tally.add(path.strip_prefix(root).unwrap_or(&path), meta.len())?;
            }
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_is_enforced_at_the_file_that_crosses_it() {
        let limits = WorktreeLimits { total_bytes: 100, file_bytes: 60, files: 3 };
        let mut t = limits.tally();
        t.add("a".as_ref(), 60).unwrap();
        assert!(t.add("b".as_ref(), 61).unwrap_err().to_string().contains("b is 61 bytes"));
        let mut t = limits.tally();
        t.add("a".as_ref(), 50).unwrap();
        assert!(t.add("b".as_ref(), 51).unwrap_err().to_string().contains("more than 100 bytes"));
        let mut t = limits.tally();
        for name in ["a", "b", "c"] {
            t.add(name.as_ref(), 1).unwrap();
        }
        assert!(t.add("d".as_ref(), 1).unwrap_err().to_string().contains("more than 3 files"));
        assert!(WorktreeLimits { files: 0, ..limits }.validate().is_err());
    }

    #[test]
    fn the_walk_counts_apparent_sizes_skips_git_and_follows_no_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::write(root.join("src/deep/a.txt"), b"12345").unwrap();
        std::fs::write(root.join(".git"), b"gitdir: /elsewhere").unwrap();
        // A sparse file: 1 MiB apparent, no blocks.
        std::fs::File::create(root.join("sparse")).unwrap().set_len(1 << 20).unwrap();
        // A symlink to a big directory counts as one small entry.
        std::os::unix::fs::symlink("/usr", root.join("usr")).unwrap();
        let tally = check_tree(root, &WorktreeLimits::default()).unwrap();
        assert_eq!(tally.files(), 3);
        assert_eq!(tally.bytes(), 5 + (1 << 20) + "/usr".len() as u64);
        let err = check_tree(root, &WorktreeLimits { file_bytes: 1000, ..WorktreeLimits::default() }).unwrap_err();
        assert_eq!(err.code(), "worktree_limit");
    }
}
