//! What is recorded about runs (usage, model decisions, outcomes) and the
//! audit trail.
//!
//! Writes about a run insert only `WHERE EXISTS` the run, so a missing run
//! is a `NotFound` named by the store rather than a foreign-key error.

use paid_core::{AuditEvent, ModelDecision, Outcome, ProjectId, RunId, UsageRecord};
use sqlx::PgPool;

use crate::error::OpResult;
use crate::rows::{self, audit_columns, decision_columns, int, json, outcome_columns, usage_columns};
use crate::runs;

pub(crate) async fn record_usage(pool: &PgPool, u: &UsageRecord) -> OpResult<()> {
    let done = sqlx::query(concat!(
        "INSERT INTO usage_records (",
        usage_columns!(),
        ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
         WHERE EXISTS (SELECT 1 FROM runs WHERE id = $1)"
    ))
    .bind(u.run_id.0)
    .bind(&u.provider)
    .bind(&u.model)
    .bind(int("usage.input", u.usage.input)?)
    .bind(int("usage.cache_read", u.usage.cache_read)?)
    .bind(int("usage.cache_write", u.usage.cache_write)?)
    .bind(int("usage.output", u.usage.output)?)
    .bind(int("usage.reasoning", u.usage.reasoning)?)
    .bind(u.cost_micros)
    .bind(int("usage.latency_ms", u.latency_ms)?)
    .bind(&u.status)
    .bind(u.at)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(runs::not_found(u.run_id));
    }
    Ok(())
}

pub(crate) async fn usage(pool: &PgPool, id: RunId) -> OpResult<Vec<UsageRecord>> {
    let all =
        sqlx::query(concat!("SELECT ", usage_columns!(), " FROM usage_records WHERE run_id = $1 ORDER BY at, id"))
            .bind(id.0)
            .fetch_all(pool)
            .await?;
    all.iter().map(rows::usage).collect()
}

pub(crate) async fn record_decision(pool: &PgPool, d: &ModelDecision) -> OpResult<()> {
    let done = sqlx::query(
        "INSERT INTO model_decisions
             (run_id, provider, model, selector, reasoning, candidates, budget_micros, complexity, at)
         SELECT $1, $2, $3, $4, $5, $6::json, $7, $8, $9
         WHERE EXISTS (SELECT 1 FROM runs WHERE id = $1)
         ON CONFLICT (run_id) DO UPDATE SET provider = excluded.provider, model = excluded.model,
             selector = excluded.selector, reasoning = excluded.reasoning, candidates = excluded.candidates,
             budget_micros = excluded.budget_micros, complexity = excluded.complexity, at = excluded.at",
    )
    .bind(d.run_id.0)
    .bind(&d.provider)
    .bind(&d.model)
    .bind(&d.selector)
    .bind(&d.reasoning)
    .bind(json("model candidates", &d.candidates)?)
    .bind(d.budget_micros)
    .bind(d.complexity)
    .bind(d.at)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(runs::not_found(d.run_id));
    }
    Ok(())
}

pub(crate) async fn decision(pool: &PgPool, id: RunId) -> OpResult<Option<ModelDecision>> {
    let row = sqlx::query(concat!("SELECT ", decision_columns!(), " FROM model_decisions WHERE run_id = $1"))
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(rows::decision).transpose()
}

pub(crate) async fn record_outcome(pool: &PgPool, o: &Outcome) -> OpResult<()> {
    let done = sqlx::query(concat!(
        "INSERT INTO outcomes (",
        outcome_columns!(),
        ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
         WHERE EXISTS (SELECT 1 FROM runs WHERE id = $1)
         ON CONFLICT (run_id) DO UPDATE SET project_id = excluded.project_id, pr_merged = excluded.pr_merged,
             ci_passed = excluded.ci_passed, lint_clean = excluded.lint_clean,
             tests_passing = excluded.tests_passing, human_vote = excluded.human_vote,
             iterations = excluded.iterations, cost_micros = excluded.cost_micros,
             quality_score = excluded.quality_score, recorded_at = excluded.recorded_at"
    ))
    .bind(o.run_id.0)
    .bind(o.project_id.0)
    .bind(o.pr_merged)
    .bind(o.ci_passed)
    .bind(o.lint_clean)
    .bind(o.tests_passing)
    .bind(o.human_vote.map(i16::from))
    .bind(i64::from(o.iterations))
    .bind(o.cost_micros)
    .bind(o.quality_score)
    .bind(o.recorded_at)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(runs::not_found(o.run_id));
    }
    Ok(())
}

pub(crate) async fn outcomes(pool: &PgPool, project: ProjectId) -> OpResult<Vec<Outcome>> {
    let all = sqlx::query(concat!(
        "SELECT ",
        outcome_columns!(),
        " FROM outcomes WHERE project_id = $1 ORDER BY recorded_at DESC, run_id DESC"
    ))
    .bind(project.0)
    .fetch_all(pool)
    .await?;
    all.iter().map(rows::outcome).collect()
}

pub(crate) async fn audit(pool: &PgPool, e: &AuditEvent) -> OpResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (at, project_id, actor, action, subject, details) VALUES ($1, $2, $3, $4, $5, $6::json)",
    )
        .bind(e.at)
        .bind(e.project_id.map(|p| p.0))
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.subject)
        .bind(json("audit details", &e.details)?)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn audit_events(pool: &PgPool, project: Option<ProjectId>) -> OpResult<Vec<AuditEvent>> {
    let all = match project {
        Some(project) => {
            sqlx::query(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_events WHERE project_id = $1 ORDER BY at, id"
            ))
            .bind(project.0)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(concat!("SELECT ", audit_columns!(), " FROM audit_events ORDER BY at, id"))
                .fetch_all(pool)
                .await?
        }
    };
    all.iter().map(rows::audit).collect()
}
