//! Making a host worktree writable for the sandbox user.
//!
//! The sandbox runs as an unprivileged uid (1000 by default) while the host
//! worktree usually belongs to whoever runs Paid, often root. Rather than
//! `chown` it, which would make host-side git reject the repository as owned
//! by someone else, the runtime adds group and other write permission (and
//! directory traversal) to everything in the tree. Git records only the
//! executable bit, so this never shows up as a change.
//!
//! Two things are left alone:
//! - symbolic links (never followed: a link must not widen permissions
//!   outside the worktree);
//! - anything named `.git`: the repository's own metadata (hooks, config) is
//!   run by host-side git, so the sandbox gets no write access to it. In a
//!   linked worktree `.git` is a file pointing at the real git directory,
//!   which is outside the mount anyway.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::DockerError;

/// Mode bits added to regular files: read and write for group and other.
const FILE_BITS: u32 = 0o066;
/// Mode bits added to directories: read, write and search for group and other.
const DIR_BITS: u32 = 0o077;

/// Adds group/other write permission to `root` and everything below it,
/// skipping symbolic links and `.git`. Blocking: call it from
/// `spawn_blocking`.
pub(crate) fn make_writable(root: &Path) -> Result<(), DockerError> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| DockerError::Permissions { path, source }
    };
    let meta = fs::symlink_metadata(root).map_err(fail(root))?;
    if !meta.is_dir() {
        return Err(DockerError::Permissions {
            path: root.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "the worktree must be a directory"),
        });
    }
    let mut stack: Vec<(PathBuf, fs::Metadata)> = vec![(root.to_path_buf(), meta)];
    while let Some((path, meta)) = stack.pop() {
        let bits = if meta.is_dir() { DIR_BITS } else { FILE_BITS };
        let mode = meta.permissions().mode();
        if mode & bits != bits {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode | bits)).map_err(fail(&path))?;
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path).map_err(fail(&path))? {
                let entry = entry.map_err(fail(&path))?;
                if entry.file_name() == ".git" {
                    continue;
                }
                let child = entry.path();
                let meta = fs::symlink_metadata(&child).map_err(fail(&child))?;
                if meta.is_dir() || meta.is_file() {
                    stack.push((child, meta));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn set(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn opens_the_tree_but_not_git_links_or_exec_bits() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        fs::write(&secret, "x").unwrap();
        set(&secret, 0o600);

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("src/nested")).unwrap();
        fs::create_dir(root.join(".git")).unwrap();
        fs::write(root.join(".git/config"), "").unwrap();
        fs::write(root.join("src/lib.rs"), "").unwrap();
        fs::write(root.join("src/nested/run.sh"), "").unwrap();
        set(&root.join("src/lib.rs"), 0o644);
        set(&root.join("src/nested/run.sh"), 0o755);
        set(&root.join("src/nested"), 0o700);
        set(&root.join(".git"), 0o755);
        set(&root.join(".git/config"), 0o644);
        symlink(&secret, root.join("link")).unwrap();

        make_writable(root).unwrap();

        assert_eq!(mode(&root.join("src")) & 0o077, 0o077);
        assert_eq!(mode(&root.join("src/nested")), 0o777);
        assert_eq!(mode(&root.join("src/lib.rs")), 0o666);
        assert_eq!(mode(&root.join("src/nested/run.sh")), 0o777);
        assert_eq!(mode(&root.join(".git")), 0o755);
        assert_eq!(mode(&root.join(".git/config")), 0o644);
        assert_eq!(mode(&secret), 0o600);
    }

    #[test]
    fn a_missing_or_plain_file_worktree_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = make_writable(&dir.path().join("gone")).unwrap_err();
        assert!(matches!(err, DockerError::Permissions { .. }));
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(matches!(make_writable(&file).unwrap_err(), DockerError::Permissions { .. }));
    }
}
