//! What the engine reports as it works, for progress displays.

use serde::Serialize;
use tokio::sync::broadcast;

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

/// Where the engine's roles send [`EngineEvent`]s. Cheap to clone; clones
/// share subscribers.
#[derive(Debug, Clone)]
pub(crate) struct Events(broadcast::Sender<EngineEvent>);

impl Events {
    /// A channel with no subscriber yet.
    pub(crate) fn new() -> Self {
        let (sender, _) = broadcast::channel(1024);
        Self(sender)
    }

    /// Sends `event` to whoever subscribed (no subscriber is fine).
    pub(crate) fn emit(&self, event: EngineEvent) {
        let _ = self.0.send(event);
    }

    /// Events from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.0.subscribe()
    }
}
