//! What is recorded about runs (usage, model decisions, outcomes) and the
//! audit trail.

use paid_core::{AuditEvent, ModelDecision, Outcome, ProjectId, RunId, UsageRecord};
use rusqlite::{Connection, params};

use crate::error::OpError;
use crate::rows::{self, AUDIT_COLUMNS, DECISION_COLUMNS, OUTCOME_COLUMNS, USAGE_COLUMNS, int, json, millis};
use crate::runs;

pub(crate) fn record_usage(c: &Connection, u: &UsageRecord) -> Result<(), OpError> {
    runs::require(c, u.run_id)?;
    c.prepare_cached(&format!(
        "INSERT INTO usage_records ({USAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        u.run_id.to_string(),
        u.provider,
        u.model,
        int("usage.input", u.usage.input)?,
        int("usage.cache_read", u.usage.cache_read)?,
        int("usage.cache_write", u.usage.cache_write)?,
        int("usage.output", u.usage.output)?,
        int("usage.reasoning", u.usage.reasoning)?,
        u.cost_micros,
        int("usage.latency_ms", u.latency_ms)?,
        u.status,
        millis(u.at),
    ])?;
    Ok(())
}

pub(crate) fn usage(c: &Connection, id: RunId) -> Result<Vec<UsageRecord>, OpError> {
    let mut stmt =
        c.prepare_cached(&format!("SELECT {USAGE_COLUMNS} FROM usage_records WHERE run_id = ?1 ORDER BY at, id"))?;
    rows::all(&mut stmt, [id.to_string()], rows::usage)
}

pub(crate) fn record_decision(c: &Connection, d: &ModelDecision) -> Result<(), OpError> {
    runs::require(c, d.run_id)?;
    c.prepare_cached(&format!(
        "INSERT INTO model_decisions ({DECISION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (run_id) DO UPDATE SET provider = excluded.provider, model = excluded.model,
             selector = excluded.selector, reasoning = excluded.reasoning, candidates = excluded.candidates,
             budget_micros = excluded.budget_micros, complexity = excluded.complexity, at = excluded.at"
    ))?
    .execute(params![
        d.run_id.to_string(),
        d.provider,
        d.model,
        d.selector,
        d.reasoning,
        json("model candidates", &d.candidates)?,
        d.budget_micros,
        d.complexity,
        millis(d.at),
    ])?;
    Ok(())
}

pub(crate) fn decision(c: &Connection, id: RunId) -> Result<Option<ModelDecision>, OpError> {
    let mut stmt = c.prepare_cached(&format!("SELECT {DECISION_COLUMNS} FROM model_decisions WHERE run_id = ?1"))?;
    rows::first(&mut stmt, [id.to_string()], rows::decision)
}

pub(crate) fn record_outcome(c: &Connection, o: &Outcome) -> Result<(), OpError> {
    runs::require(c, o.run_id)?;
    c.prepare_cached(&format!(
        "INSERT INTO outcomes ({OUTCOME_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (run_id) DO UPDATE SET project_id = excluded.project_id, pr_merged = excluded.pr_merged,
             ci_passed = excluded.ci_passed, lint_clean = excluded.lint_clean,
             tests_passing = excluded.tests_passing, human_vote = excluded.human_vote,
             iterations = excluded.iterations, cost_micros = excluded.cost_micros,
             quality_score = excluded.quality_score, recorded_at = excluded.recorded_at"
    ))?
    .execute(params![
        o.run_id.to_string(),
        o.project_id.to_string(),
        o.pr_merged,
        o.ci_passed,
        o.lint_clean,
        o.tests_passing,
        o.human_vote,
        o.iterations,
        o.cost_micros,
        o.quality_score,
        millis(o.recorded_at),
    ])?;
    Ok(())
}

pub(crate) fn outcomes(c: &Connection, project: ProjectId) -> Result<Vec<Outcome>, OpError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE project_id = ?1 ORDER BY recorded_at DESC, run_id DESC"
    ))?;
    rows::all(&mut stmt, [project.to_string()], rows::outcome)
}

pub(crate) fn audit(c: &Connection, e: &AuditEvent) -> Result<(), OpError> {
    c.prepare_cached(&format!("INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"))?.execute(
        params![
            millis(e.at),
            e.project_id.map(|p| p.to_string()),
            e.actor,
            e.action,
            e.subject,
            json("audit details", &e.details)?,
        ],
    )?;
    Ok(())
}

pub(crate) fn audit_events(c: &Connection, project: Option<ProjectId>) -> Result<Vec<AuditEvent>, OpError> {
    match project {
        Some(project) => {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE project_id = ?1 ORDER BY at, id"
            ))?;
            rows::all(&mut stmt, [project.to_string()], rows::audit)
        }
        None => {
            let mut stmt = c.prepare_cached(&format!("SELECT {AUDIT_COLUMNS} FROM audit_events ORDER BY at, id"))?;
            rows::all(&mut stmt, [], rows::audit)
        }
    }
}
