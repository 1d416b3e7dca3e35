//! `/api/v1/runs`: list, trigger, show, logs, cancel, candidates, pick.

use paid_core::engine::CandidateReport;
use paid_core::learning::PromptVersionId;
use paid_core::{LogChunk, ModelDecision, Run, RunId, RunState, StepRecord, UsageRecord};
use serde::{Deserialize, Serialize};

use crate::costs::CostView;

/// A run with its repository's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run.
    #[serde(flatten)]
    pub run: Run,
    /// `owner/name`.
    pub repo: String,
}

/// `GET /api/v1/runs` query: newest first, `limit` at a time (default 50,
/// at most 1000); `cursor` is the previous page's `meta.next_cursor`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunsQuery {
    /// Only this project's runs (`owner/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Only runs that have not ended.
    #[serde(default)]
    pub active: bool,
    /// Page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Where the page starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl RunsQuery {
    /// Every run, first page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only `repo`'s runs.
    pub fn project(mut self, repo: impl Into<String>) -> Self {
        self.project = Some(repo.into());
        self
    }

    /// Only runs that have not ended.
    pub fn active(mut self, active: bool) -> Self {
        self.active = active;
        self
    }

    /// Page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The page after the one whose `next_cursor` this is.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }
}

/// A comparison as written: `{ "models": [...], "rule": "best" | "human",
/// "ranking": [...] }`; the same in `paid.toml`'s `[projects.compare]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompareRequest {
    /// The models to compare, 2 to 8.
    pub models: Vec<String>,
    /// `best` (default) or `human`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Ordered criteria for `best` (default: the engine's ranking):
    /// `verify_passed`, `cost`, `iterations`, `lines_changed`,
    /// `files_changed`, `duration`.
    pub ranking: Vec<String>,
}

/// `POST /api/v1/runs`: an issue URL, or a repository and issue number;
/// with `compare`, a comparison run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TriggerRun {
    /// `https://github.com/owner/name/issues/N` or `owner/name#N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_url: Option<String>,
    /// `owner/name`, with `issue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The issue number, with `repo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<u64>,
    /// Compare models instead of running one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareRequest>,
}

impl TriggerRun {
    /// A run for the issue at `url` (or `owner/name#N`).
    pub fn issue_url(url: impl Into<String>) -> Self {
        Self { issue_url: Some(url.into()), ..Self::default() }
    }

    /// Makes it a comparison run.
    pub fn compare(mut self, compare: CompareRequest) -> Self {
        self.compare = Some(compare);
        self
    }
}

/// The issue a run works on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueView {
    /// Its number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Its web URL.
    pub url: String,
    /// Its author's login.
    pub author: String,
}

/// `GET /api/v1/runs/{id}`: a run and everything about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    /// The run.
    pub run: Run,
    /// `owner/name`.
    pub repo: String,
    /// Its issue, when tracked.
    pub issue: Option<IssueView>,
    /// Its journal.
    pub steps: Vec<StepRecord>,
    /// What it cost.
    pub cost: CostView,
    /// Its usage records.
    pub usage: Vec<UsageRecord>,
    /// How its model was chosen.
    pub model_decision: Option<ModelDecision>,
    /// The prompt version it used, with learning on.
    pub prompt_version: Option<PromptVersionId>,
    /// Log chunks stored.
    pub log_chunks: usize,
    /// A comparison run's candidates, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<CandidateReport>>,
}

/// `GET /api/v1/runs/{id}/candidates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidates {
    /// The run.
    pub run_id: RunId,
    /// Its state.
    pub state: RunState,
    /// Whether it waits for `POST /runs/{id}/pick`.
    pub awaiting_choice: bool,
    /// Side by side; empty until every candidate is done.
    pub candidates: Vec<CandidateReport>,
}

/// `POST /api/v1/runs/{id}/pick`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pick {
    /// A candidate's name (`c2-model`) or model.
    pub candidate: String,
}

/// `GET /api/v1/runs/{id}/logs` query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsQuery {
    /// Chunks after this sequence number.
    #[serde(default)]
    pub after: u64,
}

/// `GET /api/v1/runs/{id}/logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logs {
    /// The run's state now.
    pub run_state: RunState,
    /// Whether it has ended (no more chunks come once these are read).
    pub finished: bool,
    /// The chunks.
    pub chunks: Vec<LogChunk>,
}

/// `POST /api/v1/runs/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancelled {
    /// The run.
    pub run: Run,
    /// Always true: the worker stops the run at its next check.
    pub cancel_requested: bool,
}
