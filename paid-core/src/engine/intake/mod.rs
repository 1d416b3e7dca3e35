//! The intake role: turning forge issues into queued runs (polling, manual
//! triggers, trust, closed issues, cancels) and PR feedback into outcomes
//! and follow-up runs (`follow_up.rs`).
//!
//! Trust goes by the forge's user id (see [`crate::policy::is_trusted`]):
//! an allowlisted login is pinned to the id it has when first seen. A
//! queued run carries the issue's title and body as they were then
//! ([`crate::IssueSnapshot`] in its context): an edit made after the
//! trigger, by anyone, never reaches its agent. Polling notices such edits
//! and audits them ([`EDITED_ACTION`]). GitHub's REST API does not say who
//! edited an issue, so the audit cannot name the editor: the snapshot is
//! the guarantee, the audit a notice for people.
//!
//! [`Intake`] sees the store, the forge, the clock, the ids and the event
//! channel, plus the learning hooks (PR feedback rescores outcomes); no
//! runtime, workspaces or agent.

mod follow_up;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

pub use follow_up::{FOLLOW_UP_ACTION, FollowUpContext, FollowUpReport};

use super::CompareSpec;
use super::builder::Parts;
use super::drive::PLAN_LABEL;
use super::events::{EngineEvent, Events};
use super::learn::LearningHooks;
use crate::policy::{is_listed, is_trusted};
use crate::{
    AuditEvent, Clock, Error, Forge, ForgeIssue, Ids, IssueSnapshot, IssueState, LabelChange, NewRun, PollRequest,
    Project, ProjectId, Result, Run, RunFilter, RunId, RunKind, Store, TrackedIssue,
};

/// The audit action recording that an issue's title or body changed after
/// Paid queued a run for it (subject `issue#{n}`; details: the active runs,
/// which keep the text they were queued with, and the sizes of both texts).
pub const EDITED_ACTION: &str = "issue.edited_after_trigger";

/// The audit action recording an issue ignored because its author is not
/// trusted (subject `issue#{n}`; details: the login, the id, and the id
/// the login is pinned to when that is why).
pub const UNTRUSTED_ACTION: &str = "issue.untrusted";

/// The audit action that carries a run's [`CompareSpec`], written before
/// the run is queued.
const COMPARE_ACTION: &str = "run.compare";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CompareRequest {
    run_id: RunId,
    spec: CompareSpec,
}

/// What one poll of a project did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PollReport {
    /// Runs queued.
    pub queued: Vec<RunId>,
    /// Issues ignored because their author is not trusted.
    pub untrusted: Vec<u64>,
    /// Issues skipped because a run exists or their labels say they are handled.
    pub skipped: Vec<u64>,
    /// Tracked issues found closed on the forge (their active runs are cancelled).
    pub closed: Vec<u64>,
}

/// Queues runs: from the forge's issues, manual triggers and PR feedback.
#[derive(Clone)]
pub(crate) struct Intake {
    store: Arc<dyn Store>,
    forge: Arc<dyn Forge>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    events: Events,
    learning: LearningHooks,
}

impl Intake {
    /// The role, with the ports it uses and the learning hooks.
    pub(crate) fn new(parts: &Parts, learning: LearningHooks) -> Self {
        Self {
            store: parts.store.clone(),
            forge: parts.forge.clone(),
            clock: parts.clock.clone(),
            ids: parts.ids.clone(),
            events: parts.events.clone(),
            learning,
        }
    }

    /// Queues runs for a project's new triggered issues (see
    /// [`Engine::poll_project`](crate::engine::Engine::poll_project)).
    pub(crate) async fn poll_project(&self, project_id: ProjectId) -> Result<PollReport> {
        let project = self.store.project(project_id).await?;
        let closed = self.poll_closed(&project).await?;
        let issues = self
            .forge
            .poll_triggered(&PollRequest { repo: project.repo.clone(), labels: project.trigger_labels.clone() })
            .await?;
        let mut report = PollReport { closed, ..PollReport::default() };
        for fi in issues {
            if report.closed.contains(&fi.number) {
                continue;
            }
            self.notice_edit(&project, &fi).await?;
            let handled = [&project.labels.in_progress, &project.labels.done, &project.labels.failed];
            if fi.labels.iter().any(|l| handled.contains(&l)) {
                report.skipped.push(fi.number);
                continue;
            }
            match self.admit_with(&project, &fi, None).await {
                Ok(run) => report.queued.push(run.id),
                Err(Error::Untrusted { .. }) => report.untrusted.push(fi.number),
                Err(Error::AlreadyExists { .. }) => report.skipped.push(fi.number),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Queues a run for one issue (a manual trigger), optionally as a
    /// comparison run (see
    /// [`Engine::enqueue`](crate::engine::Engine::enqueue)).
    pub(crate) async fn enqueue_with(
        &self,
        project_id: ProjectId,
        issue: u64,
        compare: Option<CompareSpec>,
    ) -> Result<Run> {
        let project = self.store.project(project_id).await?;
        let fi = self.forge.issue(&project.repo, issue).await?;
        if fi.state == IssueState::Closed {
            return Err(Error::InvalidInput {
                what: "issue".into(),
                message: format!("{}#{} is closed", project.repo, issue),
            });
        }
        self.admit_with(&project, &fi, compare.as_ref()).await
    }

    /// Requests cancellation of a run (see
    /// [`Engine::cancel`](crate::engine::Engine::cancel)).
    pub(crate) async fn cancel(&self, run_id: RunId) -> Result<Run> {
        let run = self.store.request_cancel(run_id, self.clock.now()).await?;
        self.store
            .audit(&AuditEvent {
                at: self.clock.now(),
                project_id: Some(run.project_id),
                actor: "api".into(),
                action: "run.cancel".into(),
                subject: format!("run:{run_id}"),
                details: serde_json::json!({ "state": run.state }),
            })
            .await?;
        Ok(run)
    }

    /// Marks tracked open issues that the forge reports closed as closed,
    /// and cancels their active runs (see
    /// [`Engine::poll_closed`](crate::engine::Engine::poll_closed)).
    pub(crate) async fn poll_closed(&self, project: &Project) -> Result<Vec<u64>> {
        let store = &self.store;
        let open: Vec<TrackedIssue> =
            store.issues(project.id).await?.into_iter().filter(|i| i.state == IssueState::Open).collect();
        let Some(oldest) = open.iter().map(|i| i.updated_at).min() else { return Ok(Vec::new()) };
        let since = oldest - chrono::Duration::minutes(10);
        let closed = match self.forge.closed_issues(&project.repo, since).await {
            Ok(c) => c,
            Err(Error::Backend { retryable: false, message, .. }) => {
                debug!(project = %project.repo, %message, "forge cannot list closed issues");
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut numbers = Vec::new();
        for fi in closed.iter().filter(|fi| fi.state == IssueState::Closed) {
            let Some(tracked) = open.iter().find(|t| t.number == fi.number) else { continue };
            let now = self.clock.now();
            store.put_issue(&TrackedIssue { state: IssueState::Closed, updated_at: now, ..tracked.clone() }).await?;
            let active = store
                .runs(&RunFilter {
                    project_id: Some(project.id),
                    issue_number: Some(fi.number),
                    active_only: true,
                    limit: None,
                    ..RunFilter::default()
                })
                .await?;
            for run in active {
                info!(run_id = %run.id, project = %project.repo, issue = fi.number, "issue closed; cancelling its run");
                self.cancel(run.id).await?;
            }
            numbers.push(fi.number);
        }
        Ok(numbers)
    }

    /// The user id `login` is pinned to in `project`, pinning it to `id`
    /// first when it is allowlisted and seen with an id for the first time.
    /// `None` for a login outside the allowlist, or one never seen with an id.
    pub(crate) async fn pinned_id(&self, project: &Project, login: &str, id: Option<u64>) -> Result<Option<u64>> {
        if !is_listed(project, login) {
            return Ok(None);
        }
        match id {
            Some(id) => Ok(Some(self.store.pin_author(project.id, login, id, self.clock.now()).await?)),
            None => Ok(self
                .store
                .author_pins(project.id)
                .await?
                .into_iter()
                .find(|p| p.login.eq_ignore_ascii_case(login))
                .map(|p| p.user_id)),
        }
    }

    /// Audits a change of a tracked, trusted issue's title or body since
    /// Paid took it, when a run for it is active (the run keeps the text it
    /// was queued with), and takes the new text as the tracked issue's.
    /// Runs queued by an older build, without a snapshot, read the tracked
    /// issue: while one is active, the tracked text is left as it is.
    async fn notice_edit(&self, project: &Project, fi: &ForgeIssue) -> Result<()> {
        let Ok(tracked) = self.store.issue(project.id, fi.number).await else { return Ok(()) };
        if !tracked.trusted || (tracked.title == fi.title && tracked.body == fi.body) {
            return Ok(());
        }
        let active = self
            .store
            .runs(&RunFilter {
                project_id: Some(project.id),
                issue_number: Some(fi.number),
                active_only: true,
                ..RunFilter::default()
            })
            .await?;
        if active.is_empty() {
            return Ok(());
        }
        if active.iter().any(|r| r.context.issue.is_none()) {
            debug!(project = %project.repo, issue = fi.number, "issue edited while a run without a snapshot is active");
            return Ok(());
        }
        let runs: Vec<String> = active.iter().map(|r| r.id.to_string()).collect();
        warn!(project = %project.repo, issue = fi.number, ?runs,
            "issue edited after its run was queued; the run keeps the text it was queued with");
        let now = self.clock.now();
        self.store
            .audit(&AuditEvent {
                at: now,
                project_id: Some(project.id),
                actor: "intake".into(),
                action: EDITED_ACTION.into(),
                subject: format!("issue#{}", fi.number),
                details: serde_json::json!({
                    "runs": runs,
                    "author": fi.author,
                    "author_id": fi.author_id,
                    // The REST API does not say who edited the issue.
                    "editor": null,
                    "title_changed": tracked.title != fi.title,
                    "body_changed": tracked.body != fi.body,
                    "body_chars": { "queued": tracked.body.chars().count(), "now": fi.body.chars().count() },
                }),
            })
            .await?;
        self.store
            .put_issue(&TrackedIssue { title: fi.title.clone(), body: fi.body.clone(), updated_at: now, ..tracked })
            .await
    }

    async fn admit_with(&self, project: &Project, fi: &ForgeIssue, compare: Option<&CompareSpec>) -> Result<Run> {
        let now = self.clock.now();
        let pinned = self.pinned_id(project, &fi.author, fi.author_id).await?;
        let trusted = is_trusted(project, &fi.author, fi.author_id, pinned);
        let previous = self.store.issue(project.id, fi.number).await.ok();
        let tracked = TrackedIssue {
            project_id: project.id,
            number: fi.number,
            title: fi.title.clone(),
            body: if trusted { fi.body.clone() } else { String::new() },
            author: fi.author.clone(),
            author_id: fi.author_id,
            labels: fi.labels.clone(),
            state: fi.state,
            url: fi.url.clone(),
            trusted,
            updated_at: now,
        };
        if !trusted {
            if previous.as_ref().is_none_or(|p| p.trusted || p.author != fi.author || p.author_id != fi.author_id) {
                // A listed login whose id is not the one it is pinned to.
                let reassigned = pinned.filter(|p| Some(*p) != fi.author_id);
                warn!(project = %project.repo, issue = fi.number, author = %fi.author, author_id = ?fi.author_id,
                    pinned_id = ?reassigned, "ignoring issue from untrusted author");
                self.store
                    .audit(&AuditEvent {
                        at: now,
                        project_id: Some(project.id),
                        actor: "intake".into(),
                        action: UNTRUSTED_ACTION.into(),
                        subject: format!("issue#{}", fi.number),
                        details: serde_json::json!({
                            "author": fi.author,
                            "author_id": fi.author_id,
                            "pinned_id": reassigned,
                        }),
                    })
                    .await?;
                self.events.emit(EngineEvent::Untrusted {
                    project_id: project.id,
                    issue: fi.number,
                    author: fi.author.clone(),
                });
            }
            self.store.put_issue(&tracked).await?;
            return Err(Error::Untrusted {
                issue: fi.number,
                author: fi.author.clone(),
                allowed: project.allowed_authors.clone(),
            });
        }
        let active = self
            .store
            .runs(&RunFilter {
                project_id: Some(project.id),
                issue_number: Some(fi.number),
                active_only: true,
                limit: Some(1),
                ..RunFilter::default()
            })
            .await?;
        if let Some(run) = active.first() {
            return Err(Error::AlreadyExists { entity: "active run for issue", id: run.id.to_string() });
        }
        self.store.put_issue(&tracked).await?;
        let kind = if fi.labels.iter().any(|l| l == PLAN_LABEL) { RunKind::Plan } else { RunKind::Build };
        let id = RunId(self.ids.uuid());
        if compare.is_some() && kind != RunKind::Build {
            return Err(Error::InvalidInput {
                what: "compare".into(),
                message: format!("issue #{} is a plan issue; only build runs compare", fi.number),
            });
        }
        let run = self
            .store
            .create_run(&NewRun {
                id,
                project_id: project.id,
                issue_number: fi.number,
                kind,
                priority: 0,
                created_at: now,
                // A comparison's spec, and the issue's text as it is now, are
                // created in the same write as the run.
                context: compare.map(|spec| crate::RunContext::compare(spec.clone())).unwrap_or_default().with_issue(
                    IssueSnapshot {
                        title: fi.title.clone(),
                        body: fi.body.clone(),
                        author: fi.author.clone(),
                        author_id: fi.author_id,
                        taken_at: now,
                    },
                ),
            })
            .await?;
        if let Some(spec) = compare {
            self.record_compare(project, run.id, spec).await?;
        }
        info!(run_id = %run.id, project = %project.repo, issue = fi.number, "queued run");
        self.events.emit(EngineEvent::Queued { run_id: run.id, project_id: project.id, issue: fi.number });
        // Best effort: the label is cosmetic and the run is already durable.
        let change = LabelChange {
            repo: project.repo.clone(),
            number: fi.number,
            add: vec![project.labels.in_progress.clone()],
            remove: vec![project.labels.failed.clone()],
        };
        if let Err(e) = self.forge.set_labels(&change).await {
            warn!(run_id = %run.id, error = %e, "could not set the in-progress label");
        }
        Ok(run)
    }

    /// Records `spec` of a queued comparison run in the audit log, for
    /// people (the run carries it in its context).
    async fn record_compare(&self, project: &Project, run_id: RunId, spec: &CompareSpec) -> Result<()> {
        let details = serde_json::to_value(CompareRequest { run_id, spec: spec.clone() })
            .map_err(|e| Error::InvalidInput { what: "compare spec".into(), message: e.to_string() })?;
        self.store
            .audit(&AuditEvent {
                at: self.clock.now(),
                project_id: Some(project.id),
                actor: "engine".into(),
                action: COMPARE_ACTION.into(),
                subject: format!("run:{run_id}"),
                details,
            })
            .await
    }
}
