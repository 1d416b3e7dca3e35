//! Paid's core: domain types, ports, the engine and policies.
//!
//! Paid turns labeled issues into pull requests by running coding agents in
//! sandboxes. This crate knows no backend: storage, sandboxes, the forge, git
//! and LLMs are ports (object-safe async traits, used as `Arc<dyn Port>`),
//! implemented by the adapter crates (`paid-store-sqlite`,
//! `paid-runtime-docker`, `paid-github`, `paid-agents`, ...).
//!
//! ```
//! use paid_core::{RunState, policy::ForbiddenPaths};
//!
//! // Run states form a checked state machine.
//! assert!(RunState::Pushing.can_transition_to(RunState::OpeningPr));
//! assert!(!RunState::Queued.can_transition_to(RunState::Succeeded));
//!
//! // Policies are pure functions over data.
//! let policy = ForbiddenPaths::new(&[]).unwrap();
//! assert_eq!(policy.violations(["src/lib.rs", ".env"]), vec![".env"]);
//! ```

mod clock;
mod domain;
pub mod engine;
mod error;
mod ids;
pub mod layers;
pub mod learning;
pub mod metrics;
pub mod policy;
pub mod ports;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use domain::*;
pub use error::{BoxError, Error, Result};
pub use ids::{Ids, ProjectId, RandomIds, RunId, SequentialIds};
pub use ports::agent::{Agent, AgentContext, AgentExit, AgentOutcome, FailureClass, ProxyEndpoint};
pub use ports::credentials::RunCredentials;
pub use ports::forge::{
    CommentRequest, FailingCheck, Forge, ForgeIssue, LabelChange, PollRequest, PrFeedback, PrFeedbackRequest,
    PrRequest, PrState, PullRequest, ReviewComment, SubIssue, SubIssueLink, SubIssueRequest, Votes,
};
pub use ports::limits::{WorktreeLimits, WorktreeTally};
pub use ports::llm::{ChatEvent, ChatRequest, ChatResponse, LlmProvider, Message, Role, ToolCall, ToolSpec};
pub use ports::sandbox::{
    ExecEvent, ExecExit, ExecRequest, ReapReport, ReapRequest, ResourceLimits, SandboxHandle, SandboxInfo,
    SandboxRuntime, SandboxSpec,
};
pub use ports::secrets::{PutSecret, SecretMeta, SecretRecord, SecretStore};
pub use ports::selector::{FixedSelector, ModelSelector, SelectionRequest};
/// The store port and its sub-traits: `use paid_core::store::prelude::*`.
pub use ports::store;
pub use ports::store::{
    AppendLog, Audit, Catalog, ClaimRequest, CostQuery, DailyCost, Journal, Ledger, RunFilter, RunLog, RunPatch, Runs,
    Spend, SpendGroup, SpendQuery, Store, StoreExt, Transition, UsageTotals,
};
pub use ports::workspaces::{CommitRequest, RebaseOutcome, Workspaces, Worktree, WorktreeRequest};
