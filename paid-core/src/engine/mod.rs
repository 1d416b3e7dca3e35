//! The engine: the one place that sequences a run's steps.

mod session;

pub use session::{ExecOutput, RunLogger, SandboxSession};
