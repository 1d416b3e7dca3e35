//! Conversions between domain values and SQLite columns.
//!
//! Ids are hyphenated UUID text, times are Unix milliseconds, enums are their
//! `snake_case` names, and settings no query looks inside are JSON text.

use chrono::DateTime;
use paid_core::{
    AuditEvent, Failure, IssueState, LabelConfig, LogChunk, LogStream, ModelDecision, Outcome, Project, ProjectId,
    RepoRef, Run, RunId, RunKind, RunState, StepRecord, StepStatus, Timestamp, TrackedIssue, Usage, UsageRecord,
};
use rusqlite::{Params, Row, Statement};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::error::OpError;

/// Runs `stmt` and converts every row.
pub(crate) fn all<T>(
    stmt: &mut Statement<'_>,
    params: impl Params,
    convert: impl Fn(&Row<'_>) -> Result<T, OpError>,
) -> Result<Vec<T>, OpError> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(convert(row)?);
    }
    Ok(out)
}

/// Runs `stmt` and converts its first row, if any.
pub(crate) fn first<T>(
    stmt: &mut Statement<'_>,
    params: impl Params,
    convert: impl Fn(&Row<'_>) -> Result<T, OpError>,
) -> Result<Option<T>, OpError> {
    let mut rows = stmt.query(params)?;
    rows.next()?.map(convert).transpose()
}

pub(crate) fn millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

fn time(row: &Row<'_>, idx: usize) -> Result<Timestamp, OpError> {
    let ms: i64 = row.get(idx)?;
    Ok(DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::corrupt(column(row, idx), "time out of range"))?)
}

fn opt_time(row: &Row<'_>, idx: usize) -> Result<Option<Timestamp>, OpError> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(_) => time(row, idx).map(Some),
    }
}

pub(crate) fn column(row: &Row<'_>, idx: usize) -> String {
    row.as_ref().column_name(idx).map(str::to_string).unwrap_or_else(|_| format!("column {idx}"))
}

pub(crate) fn project_id(row: &Row<'_>, idx: usize) -> Result<ProjectId, OpError> {
    let text: String = row.get(idx)?;
    Ok(ProjectId::parse(&text).map_err(|e| Error::corrupt(column(row, idx), e))?)
}

pub(crate) fn run_id(row: &Row<'_>, idx: usize) -> Result<RunId, OpError> {
    let text: String = row.get(idx)?;
    Ok(RunId::parse(&text).map_err(|e| Error::corrupt(column(row, idx), e))?)
}

/// A `u64` as SQLite's signed integer, refusing values past `i64::MAX`.
pub(crate) fn int(what: &str, v: u64) -> Result<i64, OpError> {
    i64::try_from(v).map_err(|_| {
        OpError::Refused(paid_core::Error::InvalidInput {
            what: what.into(),
            message: format!("{v} exceeds the largest value SQLite stores ({})", i64::MAX),
        })
    })
}

pub(crate) fn uint(row: &Row<'_>, idx: usize) -> Result<u64, OpError> {
    let v: i64 = row.get(idx)?;
    Ok(u64::try_from(v).map_err(|_| Error::corrupt(column(row, idx), format!("{v} is negative")))?)
}

pub(crate) fn json<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<String, OpError> {
    Ok(serde_json::to_string(value).map_err(|source| Error::Encode { what, source })?)
}

fn from_json<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> Result<T, OpError> {
    let text: String = row.get(idx)?;
    Ok(serde_json::from_str(&text).map_err(|e| Error::corrupt(column(row, idx), e))?)
}

fn opt_json<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> Result<Option<T>, OpError> {
    match row.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(_) => from_json(row, idx).map(Some),
    }
}

fn parsed<T>(row: &Row<'_>, idx: usize, parse: impl Fn(&str) -> Option<T>) -> Result<T, OpError> {
    let text: String = row.get(idx)?;
    Ok(parse(&text).ok_or_else(|| Error::corrupt(column(row, idx), format!("unknown value {text:?}")))?)
}

fn run_state(s: &str) -> Option<RunState> {
    s.parse().ok()
}

pub(crate) fn kind_str(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Build => "build",
        RunKind::Plan => "plan",
    }
}

fn kind(s: &str) -> Option<RunKind> {
    match s {
        "build" => Some(RunKind::Build),
        "plan" => Some(RunKind::Plan),
        _ => None,
    }
}

pub(crate) fn status_str(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Started => "started",
        StepStatus::Done => "done",
        StepStatus::Failed => "failed",
    }
}

fn status(s: &str) -> Option<StepStatus> {
    match s {
        "started" => Some(StepStatus::Started),
        "done" => Some(StepStatus::Done),
        "failed" => Some(StepStatus::Failed),
        _ => None,
    }
}

pub(crate) fn issue_state_str(state: IssueState) -> &'static str {
    match state {
        IssueState::Open => "open",
        IssueState::Closed => "closed",
    }
}

fn issue_state(s: &str) -> Option<IssueState> {
    match s {
        "open" => Some(IssueState::Open),
        "closed" => Some(IssueState::Closed),
        _ => None,
    }
}

/// The project settings kept as JSON in `projects.config`.
#[derive(Serialize, Deserialize)]
pub(crate) struct ProjectConfig {
    clone_url: String,
    default_branch: String,
    trigger_labels: Vec<String>,
    allowed_authors: Vec<String>,
    /// Added with schema 7; older rows read as none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    allowed_author_ids: Vec<u64>,
    image: String,
    agent: String,
    verify: Vec<String>,
    allowed_paths: Vec<String>,
    labels: LabelConfig,
    max_concurrent_runs: u32,
    /// Added in schema 5; older rows read as no settings.
    #[serde(default)]
    settings: paid_core::ProjectSettings,
}

impl ProjectConfig {
    pub(crate) fn of(p: &Project) -> Self {
        let Project {
            id: _,
            repo: _,
            clone_url,
            default_branch,
            trigger_labels,
            allowed_authors,
            allowed_author_ids,
            image,
            agent,
            verify,
            allowed_paths,
            labels,
            max_concurrent_runs,
            created_at: _,
            settings,
        } = p.clone();
        Self {
            clone_url,
            default_branch,
            trigger_labels,
            allowed_authors,
            allowed_author_ids,
            image,
            agent,
            verify,
            allowed_paths,
            labels,
            max_concurrent_runs,
            settings,
        }
    }
}

pub(crate) const PROJECT_COLUMNS: &str = "id, repo_owner, repo_name, created_at, config";

pub(crate) fn project(row: &Row<'_>) -> Result<Project, OpError> {
    let c: ProjectConfig = from_json(row, 4)?;
    Ok(Project {
        id: project_id(row, 0)?,
        repo: RepoRef { owner: row.get(1)?, name: row.get(2)? },
        clone_url: c.clone_url,
        default_branch: c.default_branch,
        trigger_labels: c.trigger_labels,
        allowed_authors: c.allowed_authors,
        allowed_author_ids: c.allowed_author_ids,
        image: c.image,
        agent: c.agent,
        verify: c.verify,
        allowed_paths: c.allowed_paths,
        labels: c.labels,
        max_concurrent_runs: c.max_concurrent_runs,
        created_at: time(row, 3)?,
        settings: c.settings,
    })
}

pub(crate) const ISSUE_COLUMNS: &str =
    "project_id, number, title, body, author, labels, state, url, trusted, updated_at, author_id";

pub(crate) fn issue(row: &Row<'_>) -> Result<TrackedIssue, OpError> {
    Ok(TrackedIssue {
        project_id: project_id(row, 0)?,
        number: uint(row, 1)?,
        title: row.get(2)?,
        body: row.get(3)?,
        author: row.get(4)?,
        labels: from_json(row, 5)?,
        state: parsed(row, 6, issue_state)?,
        url: row.get(7)?,
        trusted: row.get(8)?,
        updated_at: time(row, 9)?,
        author_id: opt_uint(row, 10)?,
    })
}

/// An optional non-negative integer column.
pub(crate) fn opt_uint(row: &Row<'_>, idx: usize) -> Result<Option<u64>, OpError> {
    let v: Option<i64> = row.get(idx)?;
    v.map(|v| u64::try_from(v).map_err(|_| Error::corrupt(column(row, idx), format!("{v} is negative")).into()))
        .transpose()
}

pub(crate) const AUTHOR_PIN_COLUMNS: &str = "project_id, login, user_id, pinned_at";

pub(crate) fn author_pin(row: &Row<'_>) -> Result<paid_core::AuthorPin, OpError> {
    Ok(paid_core::AuthorPin {
        project_id: project_id(row, 0)?,
        login: row.get(1)?,
        user_id: uint(row, 2)?,
        pinned_at: time(row, 3)?,
    })
}

pub(crate) const RUN_COLUMNS: &str = "id, project_id, issue_number, kind, state, priority, branch, model, pr_url, \
     iterations, failure, lease_owner, lease_expires_at, created_at, updated_at, finished_at, context";

pub(crate) fn run(row: &Row<'_>) -> Result<Run, OpError> {
    Ok(Run {
        id: run_id(row, 0)?,
        project_id: project_id(row, 1)?,
        issue_number: uint(row, 2)?,
        kind: parsed(row, 3, kind)?,
        state: parsed(row, 4, run_state)?,
        priority: row.get(5)?,
        branch: row.get(6)?,
        model: row.get(7)?,
        pr_url: row.get(8)?,
        iterations: row.get(9)?,
        failure: opt_json::<Failure>(row, 10)?,
        lease_owner: row.get(11)?,
        lease_expires_at: opt_time(row, 12)?,
        created_at: time(row, 13)?,
        updated_at: time(row, 14)?,
        finished_at: opt_time(row, 15)?,
        context: from_json(row, 16)?,
    })
}

pub(crate) const STEP_COLUMNS: &str =
    "run_id, seq, step, idempotency_key, status, output, error, started_at, finished_at";

pub(crate) fn step(row: &Row<'_>) -> Result<StepRecord, OpError> {
    Ok(StepRecord {
        run_id: run_id(row, 0)?,
        seq: uint(row, 1)?,
        step: parsed(row, 2, run_state)?,
        idempotency_key: row.get(3)?,
        status: parsed(row, 4, status)?,
        output: from_json(row, 5)?,
        error: row.get(6)?,
        started_at: time(row, 7)?,
        finished_at: opt_time(row, 8)?,
    })
}

pub(crate) const LOG_COLUMNS: &str = "run_id, seq, stream, text, at";

pub(crate) fn log(row: &Row<'_>) -> Result<LogChunk, OpError> {
    Ok(LogChunk {
        run_id: run_id(row, 0)?,
        seq: uint(row, 1)?,
        stream: parsed(row, 2, |s| LogStream::parse(s).ok())?,
        text: row.get(3)?,
        at: time(row, 4)?,
    })
}

pub(crate) const USAGE_COLUMNS: &str = "run_id, provider, model, input, cache_read, cache_write, output, reasoning, \
     cost_micros, latency_ms, status, at";

pub(crate) fn usage(row: &Row<'_>) -> Result<UsageRecord, OpError> {
    Ok(UsageRecord {
        run_id: run_id(row, 0)?,
        provider: row.get(1)?,
        model: row.get(2)?,
        usage: Usage {
            input: uint(row, 3)?,
            cache_read: uint(row, 4)?,
            cache_write: uint(row, 5)?,
            output: uint(row, 6)?,
            reasoning: uint(row, 7)?,
        },
        cost_micros: row.get(8)?,
        latency_ms: uint(row, 9)?,
        status: row.get(10)?,
        at: time(row, 11)?,
    })
}

pub(crate) const DECISION_COLUMNS: &str =
    "run_id, provider, model, selector, reasoning, candidates, budget_micros, complexity, at";

pub(crate) fn decision(row: &Row<'_>) -> Result<ModelDecision, OpError> {
    Ok(ModelDecision {
        run_id: run_id(row, 0)?,
        provider: row.get(1)?,
        model: row.get(2)?,
        selector: row.get(3)?,
        reasoning: row.get(4)?,
        candidates: from_json(row, 5)?,
        budget_micros: row.get(6)?,
        complexity: row.get(7)?,
        at: time(row, 8)?,
    })
}

pub(crate) const OUTCOME_COLUMNS: &str = "run_id, project_id, pr_merged, ci_passed, lint_clean, tests_passing, \
     human_vote, iterations, cost_micros, quality_score, recorded_at";

pub(crate) fn outcome(row: &Row<'_>) -> Result<Outcome, OpError> {
    Ok(Outcome {
        run_id: run_id(row, 0)?,
        project_id: project_id(row, 1)?,
        pr_merged: row.get(2)?,
        ci_passed: row.get(3)?,
        lint_clean: row.get(4)?,
        tests_passing: row.get(5)?,
        human_vote: row.get(6)?,
        iterations: row.get(7)?,
        cost_micros: row.get(8)?,
        quality_score: row.get(9)?,
        recorded_at: time(row, 10)?,
    })
}

pub(crate) const AUDIT_COLUMNS: &str = "at, project_id, actor, action, subject, details";

pub(crate) fn audit(row: &Row<'_>) -> Result<AuditEvent, OpError> {
    let project = match row.get::<_, Option<String>>(1)? {
        None => None,
        Some(_) => Some(project_id(row, 1)?),
    };
    Ok(AuditEvent {
        at: time(row, 0)?,
        project_id: project,
        actor: row.get(2)?,
        action: row.get(3)?,
        subject: row.get(4)?,
        details: from_json(row, 5)?,
    })
}
