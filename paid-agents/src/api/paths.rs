//! Keeping the model's paths inside the worktree.
//!
//! Two checks, both required:
//! 1. [`confine`], lexically on the host: absolute paths outside the mount
//!    and `..` that climbs above the worktree are refused before anything
//!    runs;
//! 2. [`SHELL_CONFINE`], inside the sandbox: the path is resolved with
//!    `realpath -m` (following every symlink that exists) and refused unless
//!    it stays under the resolved mount, so a symlink to `/` or to
//!    `../../etc` leads nowhere.

/// Shell functions every path-taking tool script starts with. `confine P`
/// prints the resolved absolute path of `P`, or explains on stderr and exits
/// with [`OUTSIDE`] when it leaves the worktree. Expects `PAID_ROOT`.
pub(crate) const SHELL_CONFINE: &str = r#"paid_root=$(realpath -- "$PAID_ROOT") || exit 4
confine() {
  r=$(realpath -m -- "$1") || { echo "cannot resolve $1" >&2; exit 4; }
  case "$r" in
    "$paid_root"|"$paid_root"/*) printf '%s\n' "$r" ;;
    *) echo "$1 resolves to $r, which is outside the worktree ($paid_root); only paths inside it can be used" >&2; exit 3 ;;
  esac
}
"#;

/// Exit code of a tool script whose path left the worktree.
pub(crate) const OUTSIDE: i64 = 3;

/// Resolves `path` (relative to the worktree, or absolute under `mount`)
/// to a path relative to the worktree root, without touching the disk.
/// `.` is the root.
pub(crate) fn confine(path: &str, mount: &str) -> Result<String, String> {
    let path = path.trim();
    if path.contains('\0') {
        return Err("the path contains a NUL byte".into());
    }
    let mount = mount.trim_end_matches('/');
    let relative = if let Some(rest) = path.strip_prefix('/') {
        let inside = rest.strip_prefix(mount.trim_start_matches('/'));
        match inside {
            Some(tail) if tail.is_empty() || tail.starts_with('/') => tail,
            _ => {
                return Err(format!(
                    "{path} is outside the worktree: absolute paths must lie under {mount}; use a path relative to it"
                ));
            }
        }
    } else {
        path
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "{path} leads out of the worktree through `..`; only paths inside it can be used"
                    ));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(if parts.is_empty() { ".".to_string() } else { parts.join("/") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_mount_paths_are_kept_inside() {
        assert_eq!(confine("src/lib.rs", "/workspace"), Ok("src/lib.rs".into()));
        assert_eq!(confine("./a/../b//c/", "/workspace"), Ok("b/c".into()));
        assert_eq!(confine("", "/workspace"), Ok(".".into()));
        assert_eq!(confine("/workspace", "/workspace"), Ok(".".into()));
        assert_eq!(confine("/workspace/x/y", "/workspace/"), Ok("x/y".into()));
    }

    #[test]
    fn escapes_are_refused_with_a_reason() {
        let e = confine("../../etc/passwd", "/workspace").unwrap_err();
        assert!(e.contains("leads out of the worktree"), "{e}");
        assert!(confine("a/../../b", "/workspace").is_err());
        let e = confine("/etc/passwd", "/workspace").unwrap_err();
        assert!(e.contains("outside the worktree"), "{e}");
        assert!(confine("/workspace-other/x", "/workspace").is_err());
        assert!(confine("/workspace/../etc", "/workspace").is_err());
        assert!(confine("a\0b", "/workspace").is_err());
    }
}
