//! What the engine reports as it works, for progress displays.

use serde::Serialize;

use crate::{ProjectId, RunId, RunState};

/// A progress event. Subscribe with [`crate::engine::Engine::subscribe`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EngineEvent {
    /// A run was queued.
    Queued {
        /// The run.
        run_id: RunId,
        /// The project.
        project_id: ProjectId,
        /// The issue.
        issue: u64,
    },
    /// An issue was ignored because its author is not trusted.
    Untrusted {
        /// The project.
        project_id: ProjectId,
        /// The issue.
        issue: u64,
        /// Its author.
        author: String,
    },
    /// A run changed state.
    Transition {
        /// The run.
        run_id: RunId,
        /// Old state.
        from: RunState,
        /// New state.
        to: RunState,
    },
    /// A step noted something worth showing.
    Note {
        /// The run.
        run_id: RunId,
        /// The note.
        message: String,
    },
}
