//! Turning forge issues into queued runs: polling, manual triggers, trust.

use serde::Serialize;
use tracing::{info, warn};

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
}

impl Engine {
    /// Looks for triggered issues of a project and queues a run for each new
    /// one from a trusted author. Untrusted issues are tracked (text kept out
    /// of prompts), audited and skipped.
    pub async fn poll_project(&self, project_id: ProjectId) -> Result<PollReport> {
        let project = self.inner.store.project(project_id).await?;
        let issues = self
            .inner
            .forge
            .poll_triggered(&PollRequest { repo: project.repo.clone(), labels: project.trigger_labels.clone() })
            .await?;
        let mut report = PollReport::default();
        for fi in issues {
            let handled = [&project.labels.in_progress, &project.labels.done, &project.labels.failed];
            if fi.labels.iter().any(|l| handled.contains(&l)) {
                report.skipped.push(fi.number);
                continue;
            }
            match self.admit(&project, &fi).await {
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
        let project = self.inner.store.project(project_id).await?;
        let fi = self.inner.forge.issue(&project.repo, issue).await?;
        if fi.state == IssueState::Closed {
            return Err(Error::InvalidInput {
                what: "issue".into(),
                message: format!("{}#{} is closed", project.repo, issue),
            });
        }
        self.admit(&project, &fi).await
    }

    /// Requests cancellation of a run. An unleased run ends at once; a
    /// running one is stopped by its worker, which still cleans up.
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

    async fn admit(&self, project: &Project, fi: &ForgeIssue) -> Result<Run> {
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
            })
            .await?;
        if let Some(run) = active.first() {
            return Err(Error::AlreadyExists { entity: "active run for issue", id: run.id.to_string() });
        }
        self.inner.store.put_issue(&tracked).await?;
        // Planning runs (`paid-plan`) come with the planning workflow; every
        // triggered issue is built for now.
        let kind = RunKind::Build;
        let run = self
            .inner
            .store
            .create_run(&NewRun {
                id: RunId(self.inner.ids.uuid()),
                project_id: project.id,
                issue_number: fi.number,
                kind,
                priority: 0,
                created_at: now,
            })
            .await?;
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
