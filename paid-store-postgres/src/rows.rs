//! Conversions between domain values and PostgreSQL columns.
//!
//! Ids are `uuid`, times `timestamptz`, enums their `snake_case` names,
//! unsigned counts `bigint` (refusing values past `i64::MAX`), and values no
//! query looks inside `json`, read back as text.

use paid_core::{
    AuditEvent, Failure, IssueState, LabelConfig, LogChunk, LogStream, ModelDecision, Outcome, Project, ProjectId,
    RepoRef, Run, RunId, RunKind, RunState, StepRecord, StepStatus, Timestamp, TrackedIssue, Usage, UsageRecord,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::Error;
use crate::error::{OpError, OpResult};

/// The columns [`run`] reads, in order.
macro_rules! run_columns {
    () => {
        "id, project_id, issue_number, kind, state, priority, branch, model, pr_url, iterations, failure::text, \
         lease_owner, lease_expires_at, created_at, updated_at, finished_at, context::text"
    };
}
pub(crate) use run_columns;

/// The columns [`project`] reads.
macro_rules! project_columns {
    () => {
        "id, repo_owner, repo_name, created_at, config::text"
    };
}
pub(crate) use project_columns;

/// The columns [`issue`] reads.
macro_rules! issue_columns {
    () => {
        "project_id, number, title, body, author, labels::text, state, url, trusted, updated_at, author_id"
    };
}
pub(crate) use issue_columns;

/// The columns [`step`] reads.
macro_rules! step_columns {
    () => {
        "run_id, seq, step, idempotency_key, status, output::text, error::text, started_at, finished_at"
    };
}
pub(crate) use step_columns;

/// The columns [`usage`] reads.
macro_rules! usage_columns {
    () => {
        "run_id, provider, model, input, cache_read, cache_write, output, reasoning, cost_micros, latency_ms, status, at"
    };
}
pub(crate) use usage_columns;

/// The columns [`decision`] reads.
macro_rules! decision_columns {
    () => {
        "run_id, provider, model, selector, reasoning, candidates::text, budget_micros, complexity, at"
    };
}
pub(crate) use decision_columns;

/// The columns [`outcome`] reads.
macro_rules! outcome_columns {
    () => {
        "run_id, project_id, pr_merged, ci_passed, lint_clean, tests_passing, human_vote, iterations, cost_micros, \
         quality_score, recorded_at"
    };
}
pub(crate) use outcome_columns;

/// The columns [`audit`] reads.
macro_rules! audit_columns {
    () => {
        "at, project_id, actor, action, subject, details::text"
    };
}
pub(crate) use audit_columns;

/// Every `Project` field but the ones with their own column.
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
        Self {
            clone_url: p.clone_url.clone(),
            default_branch: p.default_branch.clone(),
            trigger_labels: p.trigger_labels.clone(),
            allowed_authors: p.allowed_authors.clone(),
            allowed_author_ids: p.allowed_author_ids.clone(),
            image: p.image.clone(),
            agent: p.agent.clone(),
            verify: p.verify.clone(),
            allowed_paths: p.allowed_paths.clone(),
            labels: p.labels.clone(),
            max_concurrent_runs: p.max_concurrent_runs,
            settings: p.settings.clone(),
        }
    }
}

pub(crate) fn get<'r, T>(row: &'r PgRow, idx: usize) -> OpResult<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    Ok(row.try_get(idx)?)
}

pub(crate) fn column(row: &PgRow, idx: usize) -> String {
    use sqlx::Column;
    row.columns().get(idx).map(|c| c.name().to_string()).unwrap_or_else(|| format!("column {idx}"))
}

/// A `u64` as PostgreSQL's `bigint`, refusing values past `i64::MAX`.
pub(crate) fn int(what: &str, v: u64) -> OpResult<i64> {
    i64::try_from(v).map_err(|_| {
        OpError::Refused(paid_core::Error::InvalidInput {
            what: what.into(),
            message: format!("{v} exceeds the largest value PostgreSQL's bigint holds ({})", i64::MAX),
        })
    })
}

fn uint(row: &PgRow, idx: usize) -> OpResult<u64> {
    let v: i64 = get(row, idx)?;
    Ok(u64::try_from(v).map_err(|_| Error::corrupt(column(row, idx), format!("{v} is negative")))?)
}

fn u32_col(row: &PgRow, idx: usize) -> OpResult<u32> {
    let v: i64 = get(row, idx)?;
    Ok(u32::try_from(v).map_err(|_| Error::corrupt(column(row, idx), format!("{v} is out of range")))?)
}

pub(crate) fn json<T: Serialize + ?Sized>(what: &'static str, value: &T) -> OpResult<String> {
    Ok(serde_json::to_string(value).map_err(|source| Error::Encode { what, source })?)
}

fn from_json<T: DeserializeOwned>(row: &PgRow, idx: usize) -> OpResult<T> {
    let text: String = get(row, idx)?;
    Ok(serde_json::from_str(&text).map_err(|e| Error::corrupt(column(row, idx), e))?)
}

fn opt_json<T: DeserializeOwned>(row: &PgRow, idx: usize) -> OpResult<Option<T>> {
    match get::<Option<String>>(row, idx)? {
        None => Ok(None),
        Some(_) => from_json(row, idx).map(Some),
    }
}

fn parsed<T>(row: &PgRow, idx: usize, parse: impl Fn(&str) -> Option<T>) -> OpResult<T> {
    let text: String = get(row, idx)?;
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

/// Reads a row of [`run_columns!`].
pub(crate) fn run(row: &PgRow) -> OpResult<Run> {
    run_at(row, 0)
}

/// Reads the [`run_columns!`] of a row that starts with `base` other columns.
pub(crate) fn run_at(row: &PgRow, base: usize) -> OpResult<Run> {
    Ok(Run {
        id: RunId(get(row, base)?),
        project_id: ProjectId(get(row, base + 1)?),
        issue_number: uint(row, base + 2)?,
        kind: parsed(row, base + 3, kind)?,
        state: parsed(row, base + 4, run_state)?,
        priority: get(row, base + 5)?,
        branch: get(row, base + 6)?,
        model: get(row, base + 7)?,
        pr_url: get(row, base + 8)?,
        iterations: u32_col(row, base + 9)?,
        failure: opt_json::<Failure>(row, base + 10)?,
        lease_owner: get(row, base + 11)?,
        lease_expires_at: get::<Option<Timestamp>>(row, base + 12)?,
        created_at: get(row, base + 13)?,
        updated_at: get(row, base + 14)?,
        finished_at: get(row, base + 15)?,
        context: from_json(row, base + 16)?,
    })
}

/// Reads a row of [`project_columns!`].
pub(crate) fn project(row: &PgRow) -> OpResult<Project> {
    let config: ProjectConfig = from_json(row, 4)?;
    Ok(Project {
        id: ProjectId(get(row, 0)?),
        repo: RepoRef { owner: get(row, 1)?, name: get(row, 2)? },
        clone_url: config.clone_url,
        default_branch: config.default_branch,
        trigger_labels: config.trigger_labels,
        allowed_authors: config.allowed_authors,
        allowed_author_ids: config.allowed_author_ids,
        image: config.image,
        agent: config.agent,
        verify: config.verify,
        allowed_paths: config.allowed_paths,
        labels: config.labels,
        max_concurrent_runs: config.max_concurrent_runs,
        created_at: get(row, 3)?,
        settings: config.settings,
    })
}

/// Reads a row of [`issue_columns!`].
pub(crate) fn issue(row: &PgRow) -> OpResult<TrackedIssue> {
    Ok(TrackedIssue {
        project_id: ProjectId(get(row, 0)?),
        number: uint(row, 1)?,
        title: get(row, 2)?,
        body: get(row, 3)?,
        author: get(row, 4)?,
        labels: from_json(row, 5)?,
        state: parsed(row, 6, issue_state)?,
        url: get(row, 7)?,
        trusted: get(row, 8)?,
        updated_at: get(row, 9)?,
        author_id: opt_uint(row, 10)?,
    })
}

fn opt_uint(row: &PgRow, idx: usize) -> OpResult<Option<u64>> {
    let v: Option<i64> = get(row, idx)?;
    v.map(|v| u64::try_from(v).map_err(|_| Error::corrupt(column(row, idx), format!("{v} is negative")).into()))
        .transpose()
}

/// Reads a row of `project_id, login, user_id, pinned_at` (`author_pins`).
pub(crate) fn author_pin(row: &PgRow) -> OpResult<paid_core::AuthorPin> {
    Ok(paid_core::AuthorPin {
        project_id: ProjectId(get(row, 0)?),
        login: get(row, 1)?,
        user_id: uint(row, 2)?,
        pinned_at: get(row, 3)?,
    })
}

/// Reads a row of [`step_columns!`].
pub(crate) fn step(row: &PgRow) -> OpResult<StepRecord> {
    Ok(StepRecord {
        run_id: RunId(get(row, 0)?),
        seq: uint(row, 1)?,
        step: parsed(row, 2, run_state)?,
        idempotency_key: get(row, 3)?,
        status: parsed(row, 4, status)?,
        output: from_json(row, 5)?,
        error: opt_json(row, 6)?,
        started_at: get(row, 7)?,
        finished_at: get(row, 8)?,
    })
}

/// Reads `seq, stream, text, at` of a log chunk of `run`.
pub(crate) fn log(run: RunId, row: &PgRow) -> OpResult<LogChunk> {
    let bytes: Vec<u8> = get(row, 2)?;
    let text = String::from_utf8(bytes).map_err(|e| Error::corrupt("run_logs.text", e))?;
    Ok(LogChunk {
        run_id: run,
        seq: uint(row, 0)?,
        stream: parsed(row, 1, |s| LogStream::parse(s).ok())?,
        text,
        at: get(row, 3)?,
    })
}

/// Reads a row of [`usage_columns!`].
pub(crate) fn usage(row: &PgRow) -> OpResult<UsageRecord> {
    Ok(UsageRecord {
        run_id: RunId(get(row, 0)?),
        provider: get(row, 1)?,
        model: get(row, 2)?,
        usage: Usage {
            input: uint(row, 3)?,
            cache_read: uint(row, 4)?,
            cache_write: uint(row, 5)?,
            output: uint(row, 6)?,
            reasoning: uint(row, 7)?,
        },
        cost_micros: get(row, 8)?,
        latency_ms: uint(row, 9)?,
        status: get(row, 10)?,
        at: get(row, 11)?,
    })
}

/// Reads a row of [`decision_columns!`].
pub(crate) fn decision(row: &PgRow) -> OpResult<ModelDecision> {
    Ok(ModelDecision {
        run_id: RunId(get(row, 0)?),
        provider: get(row, 1)?,
        model: get(row, 2)?,
        selector: get(row, 3)?,
        reasoning: get(row, 4)?,
        candidates: from_json(row, 5)?,
        budget_micros: get(row, 6)?,
        complexity: get(row, 7)?,
        at: get(row, 8)?,
    })
}

/// Reads a row of [`outcome_columns!`].
pub(crate) fn outcome(row: &PgRow) -> OpResult<Outcome> {
    let vote: Option<i16> = get(row, 6)?;
    let human_vote = vote
        .map(|v| i8::try_from(v).map_err(|_| Error::corrupt("outcomes.human_vote", format!("{v} is out of range"))))
        .transpose()?;
    Ok(Outcome {
        run_id: RunId(get(row, 0)?),
        project_id: ProjectId(get(row, 1)?),
        pr_merged: get(row, 2)?,
        ci_passed: get(row, 3)?,
        lint_clean: get(row, 4)?,
        tests_passing: get(row, 5)?,
        human_vote,
        iterations: u32_col(row, 7)?,
        cost_micros: get(row, 8)?,
        quality_score: get(row, 9)?,
        recorded_at: get(row, 10)?,
    })
}

/// Reads a row of [`audit_columns!`].
pub(crate) fn audit(row: &PgRow) -> OpResult<AuditEvent> {
    Ok(AuditEvent {
        at: get(row, 0)?,
        project_id: get::<Option<uuid::Uuid>>(row, 1)?.map(ProjectId),
        actor: get(row, 2)?,
        action: get(row, 3)?,
        subject: get(row, 4)?,
        details: from_json(row, 5)?,
    })
}
