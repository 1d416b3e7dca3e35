//! Follow-up: what happened to the pull requests of succeeded runs.
//!
//! [`Engine::follow_up`] reads each PR's feedback from the forge (state,
//! failing checks, trusted review comments, trusted votes), records it in
//! the runs' outcomes, and queues a follow-up build run on the PR's branch
//! when checks fail or trusted reviewers commented.
//!
//! A follow-up run is an ordinary build run of the same issue. What makes it
//! a follow-up is a [`FollowUpContext`], written as an audit event (action
//! [`FOLLOW_UP_ACTION`], subject `run:{id}`) *before* the run is queued, so
//! no worker can claim the run without it. The engine reads it back when it
//! provisions the run (the run gets the PR's branch instead of a fresh one)
//! and when it renders the agent's prompt (the feedback digest is appended).
//! Keeping it in the audit log needs no new columns in either store.
//!
//! Provisioning brings the branch up to date with the default branch
//! ([`crate::Workspaces::rebase`]) right after creating the worktree, moves
//! the worktree's base to the default branch's tip, and records the outcome
//! as an audit event (action [`REBASE_ACTION`], subject `run:{id}`). The
//! prompt says what happened; on conflicts it lists the conflicted paths
//! (names from git, not text from users) and tells the agent to resolve them
//! first. The push is a force-with-lease over the branch Paid saw (a rebased
//! branch is rewritten), the PR is found again by its head branch, and each
//! run's summary comment is upserted by its marker.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Engine, EngineEvent};
use crate::{
    AuditEvent, Error, NewRun, Outcome, PrFeedback, PrFeedbackRequest, PrState, Project, ProjectId, RebaseOutcome,
    Result, Run, RunContext, RunFilter, RunId, RunKind, RunPatch, RunState, Worktree,
};

/// The audit action that carries a follow-up run's [`FollowUpContext`].
pub const FOLLOW_UP_ACTION: &str = "run.follow_up";

/// The audit action recording how provisioning rebased a follow-up run's
/// branch (details: the [`RebaseOutcome`]).
pub const REBASE_ACTION: &str = "run.rebase";

/// How much of one failing check's output goes into the prompt.
const CHECK_OUTPUT_TAIL: usize = 2_000;

/// What a follow-up run works from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpContext {
    /// The follow-up run.
    pub run_id: RunId,
    /// The run whose PR got the feedback.
    pub previous_run: RunId,
    /// The PR's head branch, which the follow-up run reuses.
    pub branch: String,
    /// The PR's number.
    pub pr_number: u64,
    /// The PR's URL.
    pub pr_url: String,
    /// The head commit the feedback is about.
    pub head_sha: String,
    /// The digest given to the agent: failing checks and trusted review
    /// comments. Never holds untrusted text.
    pub feedback: String,
    /// How provisioning brought the branch up to date with the default
    /// branch: `None` until then; provisioning records it in the run's
    /// context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebase: Option<RebaseOutcome>,
}

/// What one [`Engine::follow_up`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FollowUpReport {
    /// Pull requests whose feedback was read.
    pub checked: Vec<u64>,
    /// Runs whose outcome was updated.
    pub outcomes: Vec<RunId>,
    /// Follow-up runs queued.
    pub queued: Vec<RunId>,
    /// Pull requests that asked for a follow-up but got none: a run for the
    /// issue is active, or the same feedback was already handed to a run.
    pub skipped: Vec<u64>,
    /// Pull requests whose feedback could not be read, with the error.
    pub errors: Vec<(u64, String)>,
}

/// The PR number at the end of a PR URL (`.../pull/12`).
fn pr_number(url: &str) -> Option<u64> {
    url.trim_end_matches('/').rsplit('/').next()?.parse().ok()
}

/// The agent-facing digest of a PR's feedback.
fn digest(number: u64, feedback: &PrFeedback) -> String {
    let mut out = format!("Pull request #{number} got feedback to address.\n");
    if !feedback.failing_checks.is_empty() {
        out.push_str("\nFailing checks:\n");
        for c in &feedback.failing_checks {
            out.push_str(&format!("\n### {}\n{}\n", c.name, tail(c.output.trim(), CHECK_OUTPUT_TAIL)));
        }
    }
    if !feedback.review_comments.is_empty() {
        out.push_str("\nReview comments:\n");
        for c in &feedback.review_comments {
            let place = match (&c.path, c.line) {
                (Some(p), Some(l)) => format!(" on {p}:{l}"),
                (Some(p), None) => format!(" on {p}"),
                _ => String::new(),
            };
            out.push_str(&format!("\n- {}{place}: {}\n", c.author, c.body.trim()));
        }
    }
    out
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = s.len() - max;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    &s[cut..]
}

impl Engine {
    /// Reads the feedback on the PRs of a project's succeeded build runs,
    /// records it in their outcomes (merged or closed, CI, 👍/👎 of trusted
    /// authors), and queues a follow-up run on the PR's branch for each open
    /// PR with failing checks or trusted review comments. Feedback already
    /// handed to a follow-up run (same head commit, same text) queues
    /// nothing again.
    pub async fn follow_up(&self, project_id: ProjectId) -> Result<FollowUpReport> {
        let store = &self.inner.store;
        let project = store.project(project_id).await?;
        let runs = store.runs(&RunFilter { project_id: Some(project_id), ..Default::default() }).await?;
        // Newest first: the first run seen per PR is its latest.
        let mut by_pr: Vec<(u64, Vec<Run>)> = Vec::new();
        for run in runs {
            if run.kind != RunKind::Build || run.state != RunState::Succeeded {
                continue;
            }
            let Some(number) = run.pr_url.as_deref().and_then(pr_number) else { continue };
            match by_pr.iter_mut().find(|(n, _)| *n == number) {
                Some((_, list)) => list.push(run),
                None => by_pr.push((number, vec![run])),
            }
        }
        let outcomes: HashMap<RunId, Outcome> =
            store.outcomes(project_id).await?.into_iter().map(|o| (o.run_id, o)).collect();
        let mut report = FollowUpReport::default();
        for (number, runs) in by_pr {
            let req = PrFeedbackRequest {
                repo: project.repo.clone(),
                number,
                trusted_authors: project.allowed_authors.clone(),
            };
            let feedback = match self.inner.forge.pr_feedback(&req).await {
                Ok(f) => f,
                Err(e) => {
                    warn!(project = %project.repo, pr = number, error = %e, "could not read pull request feedback");
                    report.errors.push((number, e.to_string()));
                    continue;
                }
            };
            report.checked.push(number);
            for run in &runs {
                self.record_feedback(run, &feedback, outcomes.get(&run.id)).await?;
                report.outcomes.push(run.id);
            }
            if !feedback.needs_follow_up() {
                continue;
            }
            match self.queue_follow_up(&project, &runs[0], number, &feedback).await? {
                Some(run) => report.queued.push(run.id),
                None => report.skipped.push(number),
            }
        }
        Ok(report)
    }

    async fn record_feedback(&self, run: &Run, feedback: &PrFeedback, known: Option<&Outcome>) -> Result<()> {
        let base = known.cloned().unwrap_or(Outcome {
            run_id: run.id,
            project_id: run.project_id,
            pr_merged: None,
            ci_passed: None,
            lint_clean: None,
            tests_passing: None,
            human_vote: None,
            iterations: run.iterations,
            cost_micros: None,
            quality_score: None,
            recorded_at: self.inner.clock.now(),
        });
        let outcome = Outcome {
            pr_merged: match feedback.state {
                PrState::Merged => Some(true),
                PrState::Closed => Some(false),
                PrState::Open => None,
            },
            // No failing check run on the head commit counts as passing.
            ci_passed: Some(feedback.failing_checks.is_empty()),
            human_vote: feedback.votes.human_vote(),
            // Inputs changed: whoever scores recomputes it.
            quality_score: None,
            recorded_at: self.inner.clock.now(),
            ..base
        };
        self.inner.store.record_outcome(&outcome).await?;
        // Rescore under the run's prompt version (best effort).
        let learned = crate::learning::evolution::RunFeedback {
            review_comments: feedback.review_comments.iter().map(|c| c.body.clone()).collect(),
            ci_failure_digest: (!feedback.failing_checks.is_empty()).then(|| {
                feedback
                    .failing_checks
                    .iter()
                    .map(|c| format!("{}: {}", c.name, c.output))
                    .collect::<Vec<_>>()
                    .join("\n")
            }),
            iterations: run.iterations,
        };
        self.learn_outcome(run, &outcome, learned).await;
        Ok(())
    }

    async fn queue_follow_up(
        &self,
        project: &Project,
        latest: &Run,
        number: u64,
        feedback: &PrFeedback,
    ) -> Result<Option<Run>> {
        let store = &self.inner.store;
        let Some(branch) = latest.branch.clone() else { return Ok(None) };
        let text = digest(number, feedback);
        // The same feedback on the same commit was already handed to a run.
        for ctx in self.follow_up_contexts(project.id).await?.into_iter().rev() {
            if ctx.pr_number != number {
                continue;
            }
            if store.run(ctx.run_id).await.is_err() {
                continue; // its run was never queued
            }
            if ctx.head_sha == feedback.head_sha && ctx.feedback == text {
                info!(project = %project.repo, pr = number, "feedback already handed to run {}", ctx.run_id);
                return Ok(None);
            }
            break;
        }
        let active = store
            .runs(&RunFilter {
                project_id: Some(project.id),
                issue_number: Some(latest.issue_number),
                active_only: true,
                limit: Some(1),
                ..RunFilter::default()
            })
            .await?;
        if !active.is_empty() {
            return Ok(None);
        }
        let now = self.inner.clock.now();
        let ctx = FollowUpContext {
            run_id: RunId(self.inner.ids.uuid()),
            previous_run: latest.id,
            branch,
            pr_number: number,
            pr_url: latest.pr_url.clone().unwrap_or_default(),
            head_sha: feedback.head_sha.clone(),
            feedback: text,
            rebase: None,
        };
        let run = match store
            .create_run(&NewRun {
                id: ctx.run_id,
                project_id: project.id,
                issue_number: latest.issue_number,
                kind: RunKind::Build,
                priority: latest.priority,
                created_at: now,
                // The context is created in the same write as the run.
                context: RunContext::follow_up(ctx.clone()),
            })
            .await
        {
            Ok(run) => run,
            Err(Error::AlreadyExists { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        // For people: the audit log is never read to drive a run.
        store
            .audit(&AuditEvent {
                at: now,
                project_id: Some(project.id),
                actor: "engine".into(),
                action: FOLLOW_UP_ACTION.into(),
                subject: format!("run:{}", ctx.run_id),
                details: serde_json::to_value(&ctx)
                    .map_err(|e| Error::InvalidInput { what: "follow-up context".into(), message: e.to_string() })?,
            })
            .await?;
        info!(run_id = %run.id, previous = %latest.id, pr = number, branch = %ctx.branch, "queued follow-up run");
        self.emit(EngineEvent::Queued { run_id: run.id, project_id: project.id, issue: latest.issue_number });
        Ok(Some(run))
    }

    /// Every follow-up context of a project's runs, oldest first.
    async fn follow_up_contexts(&self, project_id: ProjectId) -> Result<Vec<FollowUpContext>> {
        let runs = self.inner.store.runs(&RunFilter { project_id: Some(project_id), ..RunFilter::default() }).await?;
        Ok(runs.into_iter().rev().filter_map(|r| r.context.follow_up).collect())
    }

    /// The follow-up context of `run`, if it is a follow-up run, with the
    /// rebase outcome once provisioning recorded it.
    pub(super) async fn follow_up_context(&self, run: &Run) -> Result<Option<FollowUpContext>> {
        if run.kind != RunKind::Build {
            return Ok(None);
        }
        Ok(run.context.follow_up.clone())
    }

    /// Brings a follow-up run's freshly created worktree up to date with the
    /// default branch, moves its base to the default branch's tip, and
    /// records the outcome for the prompt. A `kept` worktree (the run's own,
    /// found again when only its sandbox is re-created) was rebased already
    /// and may hold uncommitted work: it only gets its base back.
    pub(super) async fn rebase_follow_up(
        &self,
        run: &Run,
        project: &Project,
        worktree: &mut Worktree,
        ctx: &FollowUpContext,
        kept: bool,
    ) -> Result<()> {
        if kept && let Some(done) = &ctx.rebase {
            if let Some(onto) = done.onto() {
                worktree.base_commit = onto.to_string();
            }
            return Ok(());
        }
        let outcome = self.inner.workspaces.rebase(project, worktree).await?;
        if let Some(onto) = outcome.onto() {
            worktree.base_commit = onto.to_string();
        }
        match &outcome {
            RebaseOutcome::UpToDate => info!(run_id = %run.id, branch = %worktree.branch, "branch is up to date"),
            RebaseOutcome::Rebased { onto } => {
                info!(run_id = %run.id, branch = %worktree.branch, %onto, "rebased the branch onto the default branch")
            }
            RebaseOutcome::Conflicts { onto, paths } => {
                info!(run_id = %run.id, branch = %worktree.branch, %onto, ?paths, "rebase conflicts left for the agent")
            }
        }
        let mut context = run.context.clone();
        if let Some(follow_up) = &mut context.follow_up {
            follow_up.rebase = Some(outcome.clone());
        }
        self.patch(run, RunPatch { context: Some(context), ..RunPatch::default() }).await?;
        // For people: the audit log is never read to drive a run.
        self.inner
            .store
            .audit(&AuditEvent {
                at: self.inner.clock.now(),
                project_id: Some(project.id),
                actor: "engine".into(),
                action: REBASE_ACTION.into(),
                subject: format!("run:{}", run.id),
                details: serde_json::to_value(&outcome)
                    .map_err(|e| Error::InvalidInput { what: "rebase outcome".into(), message: e.to_string() })?,
            })
            .await
    }
}

/// The part of a follow-up run's prompt that the engine appends to the
/// rendered task template.
pub(super) fn follow_up_prompt(ctx: &FollowUpContext) -> String {
    let branch_state = match &ctx.rebase {
        None => String::new(),
        Some(RebaseOutcome::UpToDate) => "The branch already contains the latest default branch. ".to_string(),
        Some(RebaseOutcome::Rebased { onto }) => {
            format!("Paid rebased the branch onto the latest default branch (commit {}). ", short(onto))
        }
        Some(RebaseOutcome::Conflicts { onto, paths }) => {
            // Paths come from git, but anyone who can push may name a file:
            // keep each on one line, without backticks.
            let list: String = paths
                .iter()
                .map(|p| p.chars().map(|c| if c.is_control() || c == '`' { '?' } else { c }).collect::<String>())
                .map(|p| format!("- `{p}`\n"))
                .collect();
            format!(
                "Bringing the branch up to date with the latest default branch (commit {}) conflicted. Paid is \
                 merging it into this worktree; these files contain git's conflict markers (`<<<<<<<`, `=======`, \
                 `>>>>>>>`):\n\n{list}\nResolve every conflict first: keep the intent of both sides and remove \
                 all the markers. Paid commits the resolution as the merge.\n\n",
                short(onto)
            )
        }
    };
    format!(
        "\n## Follow-up on pull request #{n}\n\n\
         This worktree is the branch `{b}` of pull request #{n} ({url}), with the earlier work on this issue \
         already committed. {branch_state}Address the feedback below with the smallest change on top of the \
         existing commits.\n\n{f}",
        n = ctx.pr_number,
        b = ctx.branch,
        url = ctx.pr_url,
        f = ctx.feedback
    )
}

/// The first 12 characters of a commit id.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FailingCheck, ReviewComment, Votes};

    #[test]
    fn pr_numbers_come_from_the_url() {
        assert_eq!(pr_number("https://github.com/o/r/pull/12"), Some(12));
        assert_eq!(pr_number("http://127.0.0.1:1/o/r/pull/3/"), Some(3));
        assert_eq!(pr_number("nope"), None);
    }

    #[test]
    fn digest_lists_checks_and_comments() {
        let f = PrFeedback {
            state: PrState::Open,
            head_sha: "abc".into(),
            failing_checks: vec![FailingCheck { name: "test".into(), output: "FAIL: add".into() }],
            review_comments: vec![ReviewComment {
                author: "alice".into(),
                body: "rename x".into(),
                path: Some("calc.sh".into()),
                line: Some(3),
            }],
            votes: Votes::default(),
        };
        let d = digest(7, &f);
        assert!(d.contains("### test\nFAIL: add"), "{d}");
        assert!(d.contains("- alice on calc.sh:3: rename x"), "{d}");
    }

    fn ctx(rebase: Option<RebaseOutcome>) -> FollowUpContext {
        FollowUpContext {
            run_id: RunId(uuid::Uuid::nil()),
            previous_run: RunId(uuid::Uuid::nil()),
            branch: "paid/7-fix-abcdef".into(),
            pr_number: 9,
            pr_url: "https://github.com/o/r/pull/9".into(),
            head_sha: "abc".into(),
            feedback: "FEEDBACK".into(),
            rebase,
        }
    }

    #[test]
    fn the_prompt_says_how_the_branch_was_brought_up_to_date() {
        let onto = "0123456789abcdef0123456789abcdef01234567".to_string();
        let conflicts = follow_up_prompt(&ctx(Some(RebaseOutcome::Conflicts {
            onto: onto.clone(),
            paths: vec!["calc.sh".into(), "docs/a b.md".into()],
        })));
        assert!(conflicts.contains("- `calc.sh`\n- `docs/a b.md`\n"), "{conflicts}");
        assert!(conflicts.contains("Resolve every conflict first"), "{conflicts}");
        assert!(conflicts.contains("0123456789ab)"), "{conflicts}");
        assert!(conflicts.ends_with("FEEDBACK"), "{conflicts}");

        let rebased = follow_up_prompt(&ctx(Some(RebaseOutcome::Rebased { onto })));
        assert!(rebased.contains("Paid rebased the branch onto the latest default branch"), "{rebased}");
        assert!(!rebased.contains("conflict"), "{rebased}");
        let up = follow_up_prompt(&ctx(Some(RebaseOutcome::UpToDate)));
        assert!(up.contains("already contains the latest default branch"), "{up}");
        assert!(!follow_up_prompt(&ctx(None)).contains("default branch"));
    }

    #[test]
    fn the_rebase_outcome_is_not_stored_with_the_context() {
        let json = serde_json::to_value(ctx(None)).unwrap();
        assert!(json.get("rebase").is_none(), "{json}");
        let back: FollowUpContext = serde_json::from_value(json).unwrap();
        assert_eq!(back, ctx(None));
        let outcome = RebaseOutcome::Conflicts { onto: "x".into(), paths: vec!["a".into()] };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json, serde_json::json!({ "outcome": "conflicts", "onto": "x", "paths": ["a"] }));
        assert_eq!(serde_json::from_value::<RebaseOutcome>(json).unwrap(), outcome);
    }
}
