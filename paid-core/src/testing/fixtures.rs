//! Sample values for conformance suites and backend tests.
//!
//! Every field is set to something other than its default, so a backend that
//! drops or mangles a field fails a whole-value comparison. Times are whole
//! milliseconds (stores may keep no finer precision), counted from [`T0`].
//!
//! ```
//! use paid_core::testing::fixtures;
//!
//! let project = fixtures::project("widgets");
//! let issue = fixtures::issue(project.id, 7);
//! let run = fixtures::new_run(project.id, issue.number);
//! assert_eq!(run.created_at, fixtures::at(0));
//! assert_eq!(fixtures::at_millis(1_500), fixtures::at(1) + chrono::Duration::milliseconds(500));
//! ```

#![allow(clippy::expect_used, reason = "test support: a broken fixture should fail the test loudly")]

use chrono::DateTime;
use uuid::Uuid;

use crate::{
    AuditEvent, IssueState, LabelConfig, ModelCandidate, ModelDecision, NewRun, Outcome, Project, ProjectId, RepoRef,
    RunId, RunKind, Timestamp, TrackedIssue, Usage, UsageRecord,
};

/// The epoch of fixture time, 2024-01-01T00:00:00Z, in Unix milliseconds.
pub const T0: i64 = 1_704_067_200_000;

/// [`T0`] plus `secs` seconds.
pub fn at(secs: i64) -> Timestamp {
    at_millis(secs * 1_000)
}

/// [`T0`] plus `millis` milliseconds.
pub fn at_millis(millis: i64) -> Timestamp {
    DateTime::from_timestamp_millis(T0 + millis).expect("fixture time within chrono's range")
}

/// A fresh project id (UUID v7, unique across store handles).
pub fn project_id() -> ProjectId {
    ProjectId(Uuid::now_v7())
}

/// A fresh run id (UUID v7, unique across store handles).
pub fn run_id() -> RunId {
    RunId(Uuid::now_v7())
}

/// A project on `acme/{name}` with every setting away from its default,
/// created at `T0 + 123 ms`.
pub fn project(name: &str) -> Project {
    Project {
        default_branch: "trunk".into(),
        trigger_labels: vec!["paid-build".into(), "paid-plan".into()],
        allowed_authors: vec!["octocat".into(), "hubot".into()],
        allowed_author_ids: vec![7_000_001, 7_000_002],
        image: "paid/agent:test".into(),
        agent: "scripted".into(),
        verify: vec!["cargo test".into(), "cargo clippy -- -D warnings".into()],
        allowed_paths: vec![".github/workflows/**".into()],
        labels: LabelConfig {
            in_progress: "wip".into(),
            done: "done".into(),
            failed: "failed".into(),
            pr: "bot-pr".into(),
        },
        max_concurrent_runs: 3,
        settings: crate::ProjectSettings {
            model: Some("claude-sonnet-4-5".into()),
            budget_usd_per_run: Some(1.5),
            budget_usd_per_month: Some(40.0),
            allowed_clone_hosts: Vec::new(),
            push_remote: None,
            push_url: None,
        },
        ..Project::new(
            project_id(),
            RepoRef::new("acme", name),
            format!("https://forge.example/acme/{name}.git"),
            at_millis(123),
        )
    }
}

/// The user id of `octocat`, the fixtures' issue author (GitHub's own).
pub const OCTOCAT_ID: u64 = 583_231;

/// Open issue `number` of `project`, by a trusted author, with two labels.
pub fn issue(project: ProjectId, number: u64) -> TrackedIssue {
    TrackedIssue {
        project_id: project,
        number,
        title: format!("Fix the flaky test #{number}"),
        body: "It fails one time in ten.\n\n- [ ] make it pass".into(),
        author: "octocat".into(),
        author_id: Some(OCTOCAT_ID),
        labels: vec!["paid-build".into(), "bug".into()],
        state: IssueState::Open,
        url: format!("https://forge.example/acme/widgets/issues/{number}"),
        trusted: true,
        updated_at: at_millis(456),
    }
}

/// A build run of `issue` with a fresh id, priority 0, queued at [`T0`].
pub fn new_run(project: ProjectId, issue: u64) -> NewRun {
    NewRun {
        id: run_id(),
        project_id: project,
        issue_number: issue,
        kind: RunKind::Build,
        priority: 0,
        created_at: at(0),
        context: Default::default(),
    }
}

/// One metered request of `run`, at `at`.
pub fn usage_record(run: RunId, at: Timestamp) -> UsageRecord {
    UsageRecord {
        run_id: run,
        provider: "anthropic".into(),
        model: "claude-sonnet".into(),
        usage: Usage { input: 1_200, cache_read: 30_000, cache_write: 4_000, output: 800, reasoning: 250 },
        cost_micros: Some(12_345),
        latency_ms: 2_345,
        status: "200".into(),
        at,
    }
}

/// A model decision for `run`, with two candidates.
pub fn decision(run: RunId) -> ModelDecision {
    ModelDecision {
        run_id: run,
        provider: "anthropic".into(),
        model: "claude-sonnet".into(),
        selector: "rules".into(),
        reasoning: "complex task within budget".into(),
        candidates: vec![
            ModelCandidate {
                provider: "anthropic".into(),
                model: "claude-sonnet".into(),
                context_window: Some(200_000),
                usd_per_mtok: Some(6.25),
            },
            ModelCandidate { provider: "local".into(), model: "tiny".into(), context_window: None, usd_per_mtok: None },
        ],
        budget_micros: Some(5_000_000),
        complexity: Some(0.75),
        at: at_millis(789),
    }
}

/// A scored outcome of `run`: merged, CI green, one thumbs-up.
pub fn outcome(project: ProjectId, run: RunId, recorded_at: Timestamp) -> Outcome {
    Outcome {
        run_id: run,
        project_id: project,
        pr_merged: Some(true),
        ci_passed: Some(true),
        lint_clean: Some(false),
        tests_passing: Some(true),
        human_vote: Some(1),
        iterations: 2,
        cost_micros: Some(98_765),
        quality_score: Some(0.875),
        recorded_at,
    }
}

/// An audit event about `subject`, for `project` if given.
pub fn audit_event(project: Option<ProjectId>, action: &str, subject: &str, at: Timestamp) -> AuditEvent {
    AuditEvent {
        at,
        project_id: project,
        actor: "engine".into(),
        action: action.into(),
        subject: subject.into(),
        details: serde_json::json!({ "reason": "test", "nested": { "n": 1, "list": [true, null] } }),
    }
}
