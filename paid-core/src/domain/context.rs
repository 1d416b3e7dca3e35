//! [`RunContext`]: what a run needs besides its state, stored with the run.
//!
//! A run's context is written in the same store write that creates the run
//! ([`crate::NewRun::context`]) and changed only together with the run
//! ([`crate::RunPatch::context`], [`crate::Transition::context`]). The
//! engine reads it from the [`crate::Run`] it already holds: nothing that
//! drives a run is read back out of the audit log, which is written for
//! people only.

use serde::{Deserialize, Serialize};

use crate::engine::{CompareSpec, FollowUpContext};
use crate::learning::PromptVersionId;
use crate::{IssueSnapshot, TrackedIssue};

/// What a run does, from its kind and its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPurpose {
    /// Turn an issue into a PR.
    Build,
    /// Split an issue into sub-issues.
    Plan,
    /// Answer the feedback on an earlier run's PR, on its branch.
    FollowUp,
    /// Give the issue to several candidates; one becomes the PR.
    Compare,
}

/// What a run needs besides its state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RunContext {
    /// A follow-up run's PR, branch and feedback digest (and, once
    /// provisioned, how the branch was brought up to date).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUpContext>,
    /// A comparison run's candidates and rule, when the run was queued as
    /// one (a project's standing comparison is configuration, not context).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareSpec>,
    /// The candidate a human picked, for a comparison awaiting a choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pick: Option<String>,
    /// The prompt version the run was given, once picked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<PromptVersionId>,
    /// The issue's title, body and author when the run was queued: what the
    /// run tells the agent, whoever edits the issue afterwards. Runs queued
    /// by an older build have none and read the tracked issue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issue: Option<IssueSnapshot>,
}

impl RunContext {
    /// A plain build or plan run's (empty) context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The context of a follow-up run.
    pub fn follow_up(ctx: FollowUpContext) -> Self {
        Self { follow_up: Some(ctx), ..Self::default() }
    }

    /// The context of a comparison run.
    pub fn compare(spec: CompareSpec) -> Self {
        Self { compare: Some(spec), ..Self::default() }
    }

    /// This context with the issue's text as it was when the run was queued.
    pub fn with_issue(mut self, snapshot: IssueSnapshot) -> Self {
        self.issue = Some(snapshot);
        self
    }

    /// The run's issue as the run was queued: `tracked` (the issue as Paid
    /// tracks it now) with the snapshot's title, body and author, if the
    /// context has one (runs queued by an older build have none). Whether
    /// it is trusted stays the tracked issue's say.
    pub fn issue_as_queued(&self, tracked: TrackedIssue) -> TrackedIssue {
        match &self.issue {
            Some(snapshot) => snapshot.apply(&tracked),
            None => tracked,
        }
    }

    /// This context with `candidate` picked.
    pub fn with_pick(mut self, candidate: impl Into<String>) -> Self {
        self.pick = Some(candidate.into());
        self
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// What a run of `kind` with this context does.
    pub fn purpose(&self, kind: crate::RunKind) -> RunPurpose {
        match kind {
            crate::RunKind::Plan => RunPurpose::Plan,
            crate::RunKind::Build if self.follow_up.is_some() => RunPurpose::FollowUp,
            crate::RunKind::Build if self.compare.is_some() => RunPurpose::Compare,
            crate::RunKind::Build => RunPurpose::Build,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_context_is_an_empty_object_and_reads_back_from_one() {
        assert_eq!(serde_json::to_string(&RunContext::new()).unwrap(), "{}");
        assert_eq!(serde_json::from_str::<RunContext>("{}").unwrap(), RunContext::new());
        assert!(RunContext::new().is_empty());
        assert!(!RunContext::new().with_pick("c1").is_empty());
    }

    #[test]
    fn the_issue_snapshot_overrides_the_tracked_text_but_not_trust() {
        let project = crate::ProjectId(uuid::Uuid::nil());
        let tracked = crate::TrackedIssue {
            project_id: project,
            number: 7,
            title: "Edited".into(),
            body: "Edited later.".into(),
            author: "octocat".into(),
            author_id: Some(1),
            labels: Vec::new(),
            state: crate::IssueState::Open,
            url: "https://forge.example/o/r/issues/7".into(),
            trusted: false,
            updated_at: chrono::DateTime::UNIX_EPOCH,
        };
        let snapshot = IssueSnapshot {
            title: "Queued".into(),
            body: "As queued.".into(),
            author: "octocat".into(),
            author_id: Some(583_231),
            taken_at: chrono::DateTime::UNIX_EPOCH,
        };
        let ctx = RunContext::new().with_issue(snapshot.clone());
        let issue = ctx.issue_as_queued(tracked.clone());
        assert_eq!(
            (issue.title.as_str(), issue.body.as_str(), issue.author_id),
            ("Queued", "As queued.", Some(583_231))
        );
        assert!(!issue.trusted, "trust stays the tracked issue's");
        assert_eq!(RunContext::new().issue_as_queued(tracked.clone()), tracked, "no snapshot: the tracked issue");
        // Stored as JSON; contexts written before snapshots existed read back.
        let json = serde_json::to_value(&ctx).unwrap();
        assert_eq!(json["issue"]["body"], "As queued.");
        assert_eq!(serde_json::from_value::<RunContext>(json).unwrap(), ctx);
        assert_eq!(serde_json::from_str::<RunContext>(r#"{"pick":"c1"}"#).unwrap().issue, None);
    }

    #[test]
    fn the_purpose_follows_kind_and_context() {
        let spec = CompareSpec::models(["a", "b"]);
        assert_eq!(RunContext::new().purpose(crate::RunKind::Build), RunPurpose::Build);
        assert_eq!(RunContext::compare(spec.clone()).purpose(crate::RunKind::Build), RunPurpose::Compare);
        assert_eq!(RunContext::compare(spec).purpose(crate::RunKind::Plan), RunPurpose::Plan);
    }
}
