//! The driver's side of follow-up runs (see the intake's `follow_up.rs`):
//! the run's [`FollowUpContext`], the rebase at provisioning, and the part
//! of the agent's prompt that hands it the feedback.
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

use tracing::info;

use super::Driver;
use crate::engine::FollowUpContext;
use crate::{AuditEvent, Error, Project, RebaseOutcome, Result, Run, RunKind, RunPatch, Worktree};

/// The audit action recording how provisioning rebased a follow-up run's
/// branch (details: the [`RebaseOutcome`]).
pub const REBASE_ACTION: &str = "run.rebase";

/// The follow-up context of `run`, if it is a follow-up run, with the
/// rebase outcome once provisioning recorded it.
pub(crate) fn follow_up_context(run: &Run) -> Option<FollowUpContext> {
    if run.kind != RunKind::Build {
        return None;
    }
    run.context.follow_up.clone()
}

impl Driver {
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
        let outcome = self.workspaces.rebase(project, worktree).await?;
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
        self.store
            .audit(&AuditEvent {
                at: self.clock.now(),
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
    use crate::RunId;

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
