//! Follow-up intake: what happened to the pull requests of succeeded runs.
//!
//! [`Intake::follow_up`] (the engine's
//! [`Engine::follow_up`](crate::engine::Engine::follow_up)) reads each PR's
//! feedback from the forge (state, failing checks, trusted review comments,
//! trusted votes), records it in the runs' outcomes (rescored by the
//! learning hooks), and queues a follow-up build run on the PR's branch when
//! checks fail or trusted reviewers commented.
//!
//! A follow-up run is an ordinary build run of the same issue. What makes it
//! a follow-up is a [`FollowUpContext`], written as an audit event (action
//! [`FOLLOW_UP_ACTION`], subject `run:{id}`) *before* the run is queued, so
//! no worker can claim the run without it. The driver reads it back when it
//! provisions the run (the run gets the PR's branch instead of a fresh one)
//! and when it renders the agent's prompt (the feedback digest is appended):
//! see the driver's `follow_up.rs`.
//! Keeping it in the audit log needs no new columns in either store.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Intake;
use crate::engine::EngineEvent;
use crate::learning::evolution::RunFeedback;
use crate::{
    AuditEvent, Error, NewRun, Outcome, PrFeedback, PrFeedbackRequest, PrState, Project, ProjectId, RebaseOutcome,
    Result, Run, RunContext, RunFilter, RunId, RunKind, RunState,
};

/// The audit action that carries a follow-up run's [`FollowUpContext`].
pub const FOLLOW_UP_ACTION: &str = "run.follow_up";

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

/// What one [`Engine::follow_up`](crate::engine::Engine::follow_up) pass did.
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

impl Intake {
    /// Reads the feedback on the PRs of a project's succeeded build runs,
    /// records it in their outcomes and queues follow-up runs (see
    /// [`Engine::follow_up`](crate::engine::Engine::follow_up)).
    pub(crate) async fn follow_up(&self, project_id: ProjectId) -> Result<FollowUpReport> {
        let store = &self.store;
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
            let req = self.feedback_request(&project, number).await?;
            let feedback = match self.forge.pr_feedback(&req).await {
                Ok(f) => self.pin_reviewers(&project, number, f).await?,
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

    /// What to ask the forge about PR `number`: review text and votes count
    /// from the project's allowlisted ids, from the ids its allowlisted
    /// logins are pinned to, and (by login) from its allowlisted logins not
    /// pinned yet.
    async fn feedback_request(&self, project: &Project, number: u64) -> Result<PrFeedbackRequest> {
        let pins = self.store.author_pins(project.id).await?;
        let mut ids = project.allowed_author_ids.clone();
        let mut logins = Vec::new();
        for login in &project.allowed_authors {
            match pins.iter().find(|p| p.login.eq_ignore_ascii_case(login)) {
                Some(pin) => ids.push(pin.user_id),
                None => logins.push(login.clone()),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(PrFeedbackRequest { repo: project.repo.clone(), number, trusted_authors: logins, trusted_author_ids: ids })
    }

    /// Pins the allowlisted logins the forge kept review comments of by
    /// login (their first sighting with an id), and drops every comment
    /// whose author is not trusted by id after all: a login pinned to
    /// another id meanwhile, or (from a forge that filtered badly) an
    /// author outside the allowlists.
    async fn pin_reviewers(&self, project: &Project, number: u64, mut feedback: PrFeedback) -> Result<PrFeedback> {
        let mut kept = Vec::with_capacity(feedback.review_comments.len());
        for c in std::mem::take(&mut feedback.review_comments) {
            if let Some(id) = c.author_id
                && !project.allowed_author_ids.contains(&id)
            {
                let pinned = self.pinned_id(project, &c.author, Some(id)).await?;
                if pinned != Some(id) {
                    warn!(project = %project.repo, pr = number, author = %c.author, author_id = id, pinned_id = ?pinned,
                        "dropping a review comment from an author not trusted by id");
                    continue;
                }
            }
            kept.push(c);
        }
        feedback.review_comments = kept;
        Ok(feedback)
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
            recorded_at: self.clock.now(),
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
            recorded_at: self.clock.now(),
            ..base
        };
        self.store.record_outcome(&outcome).await?;
        // Rescore under the run's prompt version (best effort).
        let learned = RunFeedback {
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
        self.learning.learn_outcome(run, &outcome, learned).await;
        Ok(())
    }

    async fn queue_follow_up(
        &self,
        project: &Project,
        latest: &Run,
        number: u64,
        feedback: &PrFeedback,
    ) -> Result<Option<Run>> {
        let store = &self.store;
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
        let now = self.clock.now();
        let ctx = FollowUpContext {
            run_id: RunId(self.ids.uuid()),
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
                // The context is created in the same write as the run. The
                // issue's text stays what the first run was queued with.
                context: match latest.context.issue.clone() {
                    Some(snapshot) => RunContext::follow_up(ctx.clone()).with_issue(snapshot),
                    None => RunContext::follow_up(ctx.clone()),
                },
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
        self.events.emit(EngineEvent::Queued { run_id: run.id, project_id: project.id, issue: latest.issue_number });
        Ok(Some(run))
    }

    /// Every follow-up context of a project's runs, oldest first.
    async fn follow_up_contexts(&self, project_id: ProjectId) -> Result<Vec<FollowUpContext>> {
        let runs = self.store.runs(&RunFilter { project_id: Some(project_id), ..RunFilter::default() }).await?;
        Ok(runs.into_iter().rev().filter_map(|r| r.context.follow_up).collect())
    }
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
                author_id: Some(1),
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
}
