use serde::{Deserialize, Serialize};

use crate::{ProjectId, Timestamp};

/// Something worth keeping a record of: a trust exclusion, a cancellation,
/// a policy refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When.
    pub at: Timestamp,
    /// The project, if any.
    pub project_id: Option<ProjectId>,
    /// Who acted (`engine`, `poller`, a login).
    pub actor: String,
    /// What happened, e.g. `issue.untrusted`.
    pub action: String,
    /// What it happened to, e.g. `issue#12`.
    pub subject: String,
    /// Details.
    pub details: serde_json::Value,
}
