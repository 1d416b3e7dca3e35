//! The steps after the agent's work is verified: commit, policy check,
//! push, pull request, the report on the issue, cleanup, and the outcome
//! the learning loop scores.

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::Driver;
use super::held::Drive;
use super::journal::{OutputKind, Retry, StepOutput};
use super::plan::PLAN_LABEL;
use super::steps::{Resources, VerifyOut, agent_summary, comment_marker, end_state};
use crate::engine::comparison::{compare_resources, compared};
use crate::engine::templates::{self, Summary};
use crate::engine::{EngineEvent, MAX_PR_BODY};
use crate::learning::evolution::RunFeedback;
use crate::metrics::ProjectLabels;
use crate::policy::{ForbiddenPaths, pr_title};
use crate::{
    CommentRequest, CommitRequest, Error, Failure, LabelChange, Outcome, PrRequest, PullRequest, Result, Run, RunKind,
    RunPatch, RunState, SandboxHandle, SandboxSpec,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommitOut {
    /// The commit made (none when there was nothing to commit).
    commit: Option<String>,
}

impl StepOutput for CommitOut {
    const KIND: OutputKind = OutputKind::Commit;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PolicyOut {
    /// The paths the run changed.
    paths: Vec<String>,
}

impl StepOutput for PolicyOut {
    const KIND: OutputKind = OutputKind::PolicyCheck;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PushOut {}

impl StepOutput for PushOut {
    const KIND: OutputKind = OutputKind::Push;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReportOut {
    /// The issue comment's id.
    comment: u64,
}

impl StepOutput for ReportOut {
    const KIND: OutputKind = OutputKind::Report;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CleanOut {}

impl StepOutput for CleanOut {
    const KIND: OutputKind = OutputKind::Clean;
}

impl Driver {
    /// `committing`, for `run`: the drive's run, with a human's pick applied.
    pub(super) async fn commit(&self, d: &Drive, run: &Run) -> Result<RunState> {
        let (project, journal) = (&d.project, &d.journal);
        let issue = d.issue().await?;
        let message = format!("{}\n\nPaid-Run: {}\n", pr_title(run.issue_number, &issue.title), run.id);
        let cfg = &self.config;
        let _: CommitOut = self
            .journaled(run, journal, None, cfg.timeouts.commit, Retry::Transient, || async {
                // Freeze before the host looks: no process of the sandbox
                // may touch the worktree while it is read and committed.
                self.freeze(journal).await?;
                let worktree = self.worktree(run, project, journal).await?;
                let commit = self
                    .workspaces
                    .commit_all(&CommitRequest {
                        worktree: &worktree,
                        message: &message,
                        author_name: &cfg.author_name,
                        author_email: &cfg.author_email,
                        limits: cfg.worktree_limits,
                    })
                    .await?;
                Ok(CommitOut { commit })
            })
            .await?;
        Ok(RunState::PolicyCheck)
    }

    /// Stops the run's sandbox, if it has one: every process in it ends
    /// (the container's init and all it started), so nothing the agent left
    /// running can change the worktree while the host reads it. Idempotent;
    /// a later iteration gets a new sandbox (`ensure_resources`).
    pub(super) async fn freeze(&self, journal: &super::journal::Journal) -> Result<()> {
        if let Some(r) = super::steps::latest_resources(journal) {
            self.runtime.stop(&r.sandbox).await?;
        }
        Ok(())
    }

    pub(super) async fn policy_check(&self, d: &Drive) -> Result<RunState> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        let policy = ForbiddenPaths::new(&project.allowed_paths)?;
        let _: PolicyOut = self
            .journaled(run, journal, None, self.config.timeouts.commit, Retry::Transient, || async {
                let worktree = self.worktree(run, project, journal).await?;
                let paths = self.workspaces.changed_paths(&worktree).await?;
                if paths.is_empty() {
                    return Err(Error::Agent("the agent made no changes".into()));
                }
                policy.check(paths.iter().map(String::as_str))?;
                Ok(PolicyOut { paths })
            })
            .await?;
        Ok(RunState::Pushing)
    }

    pub(super) async fn push(&self, d: &Drive) -> Result<RunState> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        let key = run.branch.clone();
        let _: PushOut = self
            .journaled(run, journal, key.as_deref(), self.config.timeouts.push, Retry::Transient, || async {
                let worktree = self.worktree(run, project, journal).await?;
                self.workspaces.push(project, &worktree).await?;
                Ok(PushOut {})
            })
            .await?;
        Ok(RunState::OpeningPr)
    }

    pub(super) async fn open_pr(&self, d: &Drive) -> Result<RunState> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        let issue = d.issue().await?;
        let head = run.branch.clone().unwrap_or_default();
        let summary = agent_summary(journal);
        let body = templates::pr_body(&summary, run.issue_number, run.id, run.model.as_deref(), MAX_PR_BODY)?;
        let req = PrRequest {
            repo: project.repo.clone(),
            // `owner:branch` when the branch is on a fork (`push_remote`).
            head: project.pr_head(&head),
            base: project.default_branch.clone(),
            title: pr_title(run.issue_number, &issue.title),
            body,
            labels: vec![project.labels.pr.clone()],
        };
        let key = format!("pr:{head}");
        let forge = &self.forge;
        let pr: PullRequest = self
            .journaled(run, journal, Some(&key), self.config.timeouts.pr, Retry::Transient, || {
                forge.find_or_create_pr(&req)
            })
            .await?;
        d.set_with_transition(RunPatch { pr_url: Some(pr.url.clone()), ..Default::default() });
        if pr.created {
            self.metrics.prs_created_total.get_or_create(&ProjectLabels { project_id: project.id.to_string() }).inc();
        }
        self.events.emit(EngineEvent::Note { run_id: run.id, message: format!("pull request {}", pr.url) });
        Ok(RunState::Reporting)
    }

    pub(super) async fn report(&self, d: &Drive) -> Result<RunState> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        let marker = comment_marker(run.id);
        let body = match run.kind {
            RunKind::Plan => self.plan_comment(run, journal)?,
            RunKind::Build => self.summary_comment(d, None).await?,
        };
        let mut remove = vec![project.labels.in_progress.clone(), project.labels.failed.clone()];
        remove.extend(project.trigger_labels.iter().cloned());
        if run.kind == RunKind::Plan {
            remove.push(PLAN_LABEL.to_string());
        }
        let labels = LabelChange {
            repo: project.repo.clone(),
            number: run.issue_number,
            add: vec![project.labels.done.clone()],
            remove,
        };
        let comment =
            CommentRequest { repo: project.repo.clone(), number: run.issue_number, marker: marker.clone(), body };
        let forge = &self.forge;
        let timeout = self.config.timeouts.issue_update;
        let _: ReportOut = self
            .journaled(run, journal, Some(&marker), timeout, Retry::Transient, || async {
                let comment = forge.upsert_comment(&comment).await?;
                forge.set_labels(&labels).await?;
                Ok(ReportOut { comment })
            })
            .await?;
        Ok(RunState::Cleaning)
    }

    pub(super) async fn summary_comment(&self, d: &Drive, failure: Option<&Failure>) -> Result<String> {
        let run = &d.run;
        let usage = d.usage().await?;
        let cost = if usage.is_empty() {
            "none reported".to_string()
        } else if usage.iter().any(|u| u.cost_micros.is_none()) {
            "unknown".to_string()
        } else {
            format!("${:.4}", usage.iter().filter_map(|u| u.cost_micros).sum::<i64>() as f64 / 1e6)
        };
        let candidates = compared(&d.journal).map(|c| c.table());
        let marker = comment_marker(run.id);
        templates::summary_comment(&Summary {
            run_id: run.id,
            model: run.model.as_deref().unwrap_or("-"),
            iterations: run.iterations,
            cost: &cost,
            seconds: (self.clock.now() - run.created_at).num_seconds().max(0),
            pr_url: run.pr_url.as_deref(),
            failure,
            candidates,
            marker: &marker,
        })
    }

    pub(super) async fn clean(&self, d: &Drive) -> Result<RunState> {
        let (run, journal) = (&d.run, &d.journal);
        let _: CleanOut = self
            .journaled(run, journal, None, self.config.timeouts.cleanup, Retry::Transient, || async {
                let run_label = run.id.to_string();
                for sandbox in self.runtime.list_managed().await? {
                    if sandbox.run_id.as_deref() == Some(run_label.as_str()) {
                        let handle = SandboxHandle { id: sandbox.id, mount_at: SandboxSpec::DEFAULT_MOUNT.into() };
                        self.runtime.remove(&handle).await?;
                    }
                }
                let mut seen = Vec::new();
                for r in journal.fields::<Resources>("resources") {
                    if !seen.contains(&r.worktree.path) {
                        self.workspaces.remove(&r.worktree).await?;
                        seen.push(r.worktree.path);
                    }
                }
                for r in compare_resources(journal) {
                    let _ = self.runtime.remove(&r.sandbox).await;
                    if !seen.contains(&r.worktree.path) {
                        self.workspaces.remove(&r.worktree).await?;
                        seen.push(r.worktree.path);
                    }
                }
                if let Some(c) = &self.credentials {
                    c.revoke(run.id).await?;
                }
                if let Some(failure) = &run.failure {
                    self.report_failure(d, failure).await;
                }
                Ok(CleanOut {})
            })
            .await?;
        if run.kind == RunKind::Build {
            self.record_outcome(d).await?;
        }
        Ok(run.failure.as_ref().map(end_state).unwrap_or(RunState::Succeeded))
    }

    /// The run's first outcome record: what is known when it ends (verify
    /// result, iterations, cost). PR merge, CI and votes are added later by
    /// follow-up polling.
    pub(super) async fn record_outcome(&self, d: &Drive) -> Result<()> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        let last_verify = journal.latest::<VerifyOut>();
        let tests_passing = if project.verify.is_empty() {
            None
        } else if let Some(c) = compared(journal) {
            c.winner_report().map(|r| r.verify_passed)
        } else {
            last_verify.as_ref().map(|v| v.passed)
        };
        let usage = d.usage().await?;
        let cost_micros = if usage.iter().any(|u| u.cost_micros.is_none()) {
            None
        } else {
            Some(usage.iter().filter_map(|u| u.cost_micros).sum())
        };
        let outcome = Outcome {
            run_id: run.id,
            project_id: project.id,
            pr_merged: None,
            ci_passed: None,
            lint_clean: None,
            tests_passing,
            human_vote: None,
            iterations: run.iterations,
            cost_micros,
            quality_score: None,
            recorded_at: self.clock.now(),
        };
        self.store.record_outcome(&outcome).await?;
        let digest = last_verify.filter(|v| !v.passed).map(|v| v.digest);
        let feedback =
            RunFeedback { review_comments: Vec::new(), ci_failure_digest: digest, iterations: run.iterations };
        self.learning.score_outcome(run, journal, &outcome, feedback).await;
        Ok(())
    }

    /// Tells the issue a run failed. Best effort: the run's end state is
    /// recorded whatever the forge says.
    pub(super) async fn report_failure(&self, d: &Drive, failure: &Failure) {
        let (run, project) = (&d.run, &d.project);
        let result = async {
            let body = self.summary_comment(d, Some(failure)).await?;
            let forge = &self.forge;
            forge
                .upsert_comment(&CommentRequest {
                    repo: project.repo.clone(),
                    number: run.issue_number,
                    marker: comment_marker(run.id),
                    body,
                })
                .await?;
            forge
                .set_labels(&LabelChange {
                    repo: project.repo.clone(),
                    number: run.issue_number,
                    add: vec![project.labels.failed.clone()],
                    remove: vec![project.labels.in_progress.clone()],
                })
                .await
        }
        .await;
        if let Err(e) = result {
            warn!(run_id = %run.id, error = %e, "could not report the failure on the issue");
        }
    }
}
