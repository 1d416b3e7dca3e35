//! Turning forge issues into queued runs: polling, manual triggers, trust.

use serde::Serialize;
use tracing::{debug, info, warn};

use super::plan::PLAN_LABEL;
use super::{Engine, EngineEvent};
use crate::policy::is_trusted;
use crate::{
    AuditEvent, Error, ForgeIssue, IssueState, LabelChange, NewRun, PollRequest, Project, ProjectId, Result, Run,
    RunFilter, RunId, RunKind, TrackedIssue,
};

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

impl Engine {
    /// Looks for triggered issues of a project and queues a run for each new
    /// one from a trusted author. Untrusted issues are tracked (text kept out
    /// of prompts), audited and skipped. Issues labeled `paid-plan` get a
    /// plan run, the others a build run.
    ///
    /// It also notices tracked issues that were closed on the forge: they are
    /// marked closed and their active runs cancelled (see
    /// [`Engine::poll_closed`]).
    pub async fn poll_project(&self, project_id: ProjectId) -> Result<PollReport> {
        let project = self.inner.store.project(project_id).await?;
        let closed = self.poll_closed(&project).await?;
        let issues = self
            .inner
            .forge
            .poll_triggered(&PollRequest { repo: project.repo.clone(), labels: project.trigger_labels.clone() })
            .await?;
        let mut report = PollReport { closed, ..PollReport::default() };
        for fi in issues {
            if report.closed.contains(&fi.number) {
                continue;
            }
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

    /// Queues a run for one issue (a manual trigger). Fails with
    /// [`Error::Untrusted`] for issues from authors outside the allowlist,
    /// and [`Error::AlreadyExists`] when the issue has an active run; in
    /// both cases no run is written.
    pub async fn enqueue(&self, project_id: ProjectId, issue: u64) -> Result<Run> {
        self.enqueue_with(project_id, issue, None).await
    }

    /// [`Engine::enqueue`], optionally as a comparison run.
    pub(super) async fn enqueue_with(
        &self,
        project_id: ProjectId,
        issue: u64,
        compare: Option<super::CompareSpec>,
    ) -> Result<Run> {
        let project = self.inner.store.project(project_id).await?;
        let fi = self.inner.forge.issue(&project.repo, issue).await?;
        if fi.state == IssueState::Closed {
            return Err(Error::InvalidInput {
                what: "issue".into(),
                message: format!("{}#{} is closed", project.repo, issue),
            });
        }
        self.admit_with(&project, &fi, compare.as_ref()).await
    }

    /// Requests cancellation of a run. An unleased run ends at once; a
    /// running one is stopped by its worker, which still cleans up; a run
    /// awaiting a choice (parked, with no worker) moves to `cleaning`, where
    /// a worker claims it and cleans up.
    pub async fn cancel(&self, run_id: RunId) -> Result<Run> {
        let run = self.inner.store.request_cancel(run_id, self.inner.clock.now()).await?;
        self.inner
            .store
            .audit(&AuditEvent {
                at: self.inner.clock.now(),
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
    /// and cancels their active runs. Returns their numbers.
    ///
    /// The cursor is the oldest `updated_at` of the tracked open issues (less
    /// a margin for clock skew): every closure of one of them happened after
    /// Paid last saw it change, so nothing is missed, and the cursor only
    /// moves when the set of tracked open issues does, which keeps idle polls
    /// conditional (free on GitHub). It lives in the store, so it survives
    /// restarts and is shared by workers. Forges that cannot list closed
    /// issues (the port's default) are skipped with a debug log.
    pub async fn poll_closed(&self, project: &Project) -> Result<Vec<u64>> {
        let store = &self.inner.store;
        let open: Vec<TrackedIssue> =
            store.issues(project.id).await?.into_iter().filter(|i| i.state == IssueState::Open).collect();
        let Some(oldest) = open.iter().map(|i| i.updated_at).min() else { return Ok(Vec::new()) };
        let since = oldest - chrono::Duration::minutes(10);
        let closed = match self.inner.forge.closed_issues(&project.repo, since).await {
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
            let now = self.inner.clock.now();
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

    async fn admit_with(
        &self,
        project: &Project,
        fi: &ForgeIssue,
        compare: Option<&super::CompareSpec>,
    ) -> Result<Run> {
        let now = self.inner.clock.now();
        let trusted = is_trusted(project, &fi.author);
        let previous = self.inner.store.issue(project.id, fi.number).await.ok();
        let tracked = TrackedIssue {
            project_id: project.id,
            number: fi.number,
            title: fi.title.clone(),
            body: if trusted { fi.body.clone() } else { String::new() },
            author: fi.author.clone(),
            labels: fi.labels.clone(),
            state: fi.state,
            url: fi.url.clone(),
            trusted,
            updated_at: now,
        };
        if !trusted {
            if previous.as_ref().is_none_or(|p| p.trusted || p.author != fi.author) {
                warn!(project = %project.repo, issue = fi.number, author = %fi.author, "ignoring issue from untrusted author");
                self.inner
                    .store
                    .audit(&AuditEvent {
                        at: now,
                        project_id: Some(project.id),
                        actor: "intake".into(),
                        action: "issue.untrusted".into(),
                        subject: format!("issue#{}", fi.number),
                        details: serde_json::json!({ "author": fi.author }),
                    })
                    .await?;
                self.emit(EngineEvent::Untrusted {
                    project_id: project.id,
                    issue: fi.number,
                    author: fi.author.clone(),
                });
            }
            self.inner.store.put_issue(&tracked).await?;
            return Err(Error::Untrusted {
                issue: fi.number,
                author: fi.author.clone(),
                allowed: project.allowed_authors.clone(),
            });
        }
        let active = self
            .inner
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
        self.inner.store.put_issue(&tracked).await?;
        let kind = if fi.labels.iter().any(|l| l == PLAN_LABEL) { RunKind::Plan } else { RunKind::Build };
        let id = RunId(self.inner.ids.uuid());
        if compare.is_some() && kind != RunKind::Build {
            return Err(Error::InvalidInput {
                what: "compare".into(),
                message: format!("issue #{} is a plan issue; only build runs compare", fi.number),
            });
        }
        let run = self
            .inner
            .store
            .create_run(&NewRun {
                id,
                project_id: project.id,
                issue_number: fi.number,
                kind,
                priority: 0,
                created_at: now,
                // A comparison's spec is created in the same write as the run.
                context: compare.map(|spec| crate::RunContext::compare(spec.clone())).unwrap_or_default(),
            })
            .await?;
        if let Some(spec) = compare {
            self.record_compare(project, run.id, spec).await?;
        }
        info!(run_id = %run.id, project = %project.repo, issue = fi.number, "queued run");
        self.emit(EngineEvent::Queued { run_id: run.id, project_id: project.id, issue: fi.number });
        // Best effort: the label is cosmetic and the run is already durable.
        let change = LabelChange {
            repo: project.repo.clone(),
            number: fi.number,
            add: vec![project.labels.in_progress.clone()],
            remove: vec![project.labels.failed.clone()],
        };
        if let Err(e) = self.inner.forge.set_labels(&change).await {
            warn!(run_id = %run.id, error = %e, "could not set the in-progress label");
        }
        Ok(run)
    }
}
