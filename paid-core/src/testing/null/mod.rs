//! Null backends: one implementation per port whose writes do nothing
//! (feature `testing`), and a runner that tells, case by case, whether a
//! conformance suite caught one.
//!
//! They are the suites' negative controls. A suite case that passes against
//! a backend that stores, sends and runs nothing checks nothing; the test
//! `tests/null_backends.rs` runs every case of every suite against its null
//! backend with [`run_case`] and fails when one passes.
//!
//! - [`NullStore`] for [`crate::Store`] (every sub-trait);
//! - [`NullForge`] for [`crate::Forge`];
//! - [`NullWorkspaces`] for [`crate::Workspaces`];
//! - [`NullRuntime`] for [`crate::SandboxRuntime`];
//! - [`NullLearningStore`] for [`crate::ports::learning::LearningStore`];
//! - [`NullSecretStore`] for [`crate::SecretStore`].

mod forge;
mod learning;
mod sandbox;
mod store;

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

pub use forge::{NullForge, NullWorkspaces};
pub use learning::{NullLearningStore, NullSecretStore};
pub use sandbox::NullRuntime;
pub use store::NullStore;

/// How one suite case fared against a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    /// The suite, e.g. `store`.
    pub suite: &'static str,
    /// The case, e.g. `projects_crud`.
    pub case: &'static str,
    /// Whether the case failed (panicked or timed out): against a null
    /// backend, whether it caught it.
    pub failed: bool,
    /// The panic message, `timed out after …`, or empty when it passed.
    pub message: String,
}

/// Runs one case, catching its panic and giving up after `limit`.
pub async fn run_case<Fut>(suite: &'static str, case: &'static str, limit: Duration, test: Fut) -> CaseOutcome
where
    Fut: Future<Output = ()>,
{
    let outcome = tokio::time::timeout(limit, AssertUnwindSafe(test).catch_unwind()).await;
    let (failed, message) = match outcome {
        Ok(Ok(())) => (false, String::new()),
        Ok(Err(panic)) => (true, panic_message(panic.as_ref())),
        Err(_) => (true, format!("timed out after {limit:?}")),
    };
    CaseOutcome { suite, case, failed, message }
}

/// The text of a panic payload (empty when it is not a string).
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_default()
}
