//! Transfer progress of a mirror clone or fetch, for progress bars:
//! [`GitWorkspaces::ensure_mirror_with_progress`].

use std::sync::Arc;

use paid_core::Project;

use super::GitWorkspaces;
use crate::error::Result;

/// How far a clone or fetch is, as libgit2 reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneProgress {
    /// Objects received so far.
    pub received_objects: usize,
    /// Objects to receive.
    pub total_objects: usize,
    /// Deltas resolved so far.
    pub indexed_deltas: usize,
    /// Deltas to resolve.
    pub total_deltas: usize,
    /// Bytes received so far.
    pub received_bytes: usize,
}

impl From<git2::Progress<'_>> for CloneProgress {
    fn from(p: git2::Progress<'_>) -> Self {
        Self {
            received_objects: p.received_objects(),
            total_objects: p.total_objects(),
            indexed_deltas: p.indexed_deltas(),
            total_deltas: p.total_deltas(),
            received_bytes: p.received_bytes(),
        }
    }
}

/// Called from the blocking thread doing the transfer.
pub(crate) type ProgressFn = Arc<dyn Fn(CloneProgress) + Send + Sync>;

impl GitWorkspaces {
    /// [`Workspaces::ensure_mirror`](paid_core::Workspaces::ensure_mirror),
    /// calling `progress` as objects arrive (from a blocking thread; keep it
    /// quick). Returns the mirror's path.
    pub async fn ensure_mirror_with_progress(
        &self,
        project: &Project,
        progress: impl Fn(CloneProgress) + Send + Sync + 'static,
    ) -> Result<std::path::PathBuf> {
        self.mirror_with(project, Some(Arc::new(progress))).await
    }
}
