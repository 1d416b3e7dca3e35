//! The domain types Paid persists and passes between ports.

mod audit;
mod context;
mod decision;
mod issue;
mod log;
mod outcome;
mod project;
mod run;
mod step;
mod usage;

pub use audit::AuditEvent;
pub use context::{RunContext, RunPurpose};
pub use decision::{MAX_MODEL_NAME_LEN, ModelCandidate, ModelDecision, is_valid_model_name, validate_model_name};
pub use issue::{AuthorPin, IssueSnapshot, IssueState, TrackedIssue};
pub use log::{LogAppend, LogChunk, LogStream, TRUNCATION_MARKER};
pub use outcome::Outcome;
pub use project::{LabelConfig, Project, ProjectSettings, RepoRef};
pub use run::{Failure, NewRun, Run, RunKind, RunState};
pub use step::{StepRecord, StepStatus};
pub use usage::{Usage, UsageRecord};
