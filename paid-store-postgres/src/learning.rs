//! [`LearningStore`] on PostgreSQL (migration `0002_learning_secrets.sql`):
//! prompts, immutable prompt versions, experiments, first-write-wins
//! assignments, arm samples and scored runs, in the store's schema.
//!
//! Every write is one statement, except `assign` (an insert and a read back
//! in one transaction). Writes that need a parent (a version's prompt, a
//! sample's experiment) insert only `WHERE EXISTS` the parent, and say which
//! one is missing when nothing was inserted; the foreign keys are the
//! backstop. Nothing here deletes, so that diagnosis cannot race.

use async_trait::async_trait;
use paid_core::learning::evolution::RunScore;
use paid_core::learning::experiment::{ArmSample, Assignment, Experiment, ExperimentStatus};
use paid_core::learning::prompts::{Prompt, PromptVersion};
use paid_core::learning::{ExperimentId, PromptVersionId};
use paid_core::ports::learning::{ExperimentFilter, LearningStore};
use paid_core::{ProjectId, RunId, Timestamp};
use serde::de::DeserializeOwned;
use sqlx::{Acquire, PgPool};
use uuid::Uuid;

use crate::error::{OpError, OpResult};
use crate::rows::json;
use crate::{Error, PgStore};

fn not_found(entity: &'static str, id: impl ToString) -> OpError {
    OpError::Refused(paid_core::Error::NotFound { entity, id: id.to_string() })
}

fn decode<T: DeserializeOwned>(what: &'static str, text: &str) -> OpResult<T> {
    Ok(serde_json::from_str(text).map_err(|e| Error::corrupt(what, e))?)
}

fn is_active(e: &Experiment) -> bool {
    matches!(e.status, ExperimentStatus::Running | ExperimentStatus::AwaitingApproval { .. })
}

/// The columns [`prompt`] reads.
macro_rules! prompt_columns {
    () => {
        "slug, description, active_version, last_evolved_at, created_at"
    };
}

type PromptRow = (String, String, Option<Uuid>, Option<Timestamp>, Timestamp);

fn prompt((slug, description, active, last_evolved_at, created_at): PromptRow) -> Prompt {
    Prompt { slug, description, active_version: active.map(PromptVersionId), last_evolved_at, created_at }
}

/// The columns [`version`] reads.
macro_rules! version_columns {
    () => {
        "id, slug, version, template, variables::text, parent, created_by::text, created_at"
    };
}

type VersionRow = (Uuid, String, i64, String, String, Option<Uuid>, String, Timestamp);

fn version(
    (id, slug, number, template, variables, parent, created_by, created_at): VersionRow,
) -> OpResult<PromptVersion> {
    Ok(PromptVersion {
        id: PromptVersionId(id),
        slug,
        version: u32::try_from(number).map_err(|_| Error::corrupt("prompt_versions.version", number))?,
        template,
        variables: decode("prompt_versions.variables", &variables)?,
        parent: parent.map(PromptVersionId),
        created_by: decode("prompt_versions.created_by", &created_by)?,
        created_at,
    })
}

/// The query [`assignment`] reads.
const SELECT_ASSIGNMENT: &str = "SELECT experiment_id, issue_key, arm, run_id, assigned_at FROM experiment_assignments
     WHERE experiment_id = $1 AND issue_key = $2";

type AssignmentRow = (Uuid, String, String, Uuid, Timestamp);

fn assignment((experiment, issue_key, arm, run, assigned_at): AssignmentRow) -> Assignment {
    Assignment { experiment_id: ExperimentId(experiment), issue_key, arm, run_id: RunId(run), assigned_at }
}

type SampleRow = (Uuid, String, Uuid, f64, Timestamp);

fn sample((experiment, arm, run, score, recorded_at): SampleRow) -> ArmSample {
    ArmSample { experiment_id: ExperimentId(experiment), arm, run_id: RunId(run), score, recorded_at }
}

type ScoreRow = (Uuid, Uuid, Uuid, f64, String, Timestamp);

fn run_score((run, version, project, score, feedback, scored_at): ScoreRow) -> OpResult<RunScore> {
    Ok(RunScore {
        run_id: RunId(run),
        prompt_version_id: PromptVersionId(version),
        project_id: ProjectId(project),
        score,
        feedback: decode("run_scores.feedback", &feedback)?,
        scored_at,
    })
}

async fn put_prompt(pool: &PgPool, p: &Prompt) -> OpResult<()> {
    sqlx::query(
        "INSERT INTO prompts (slug, description, active_version, last_evolved_at, created_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (slug) DO UPDATE SET description = excluded.description,
             active_version = excluded.active_version, last_evolved_at = excluded.last_evolved_at,
             created_at = excluded.created_at",
    )
    .bind(&p.slug)
    .bind(&p.description)
    .bind(p.active_version.map(|v| v.0))
    .bind(p.last_evolved_at)
    .bind(p.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Inserts the version only if its prompt and parent exist and neither its
/// id nor its `(slug, version)` is taken; otherwise says which.
async fn create_version(pool: &PgPool, v: &PromptVersion) -> OpResult<()> {
    let inserted = sqlx::query(
        "INSERT INTO prompt_versions (id, slug, version, template, variables, parent, created_by, created_at)
         SELECT $1, $2, $3, $4, $5::json, $6, $7::json, $8
         WHERE EXISTS (SELECT 1 FROM prompts WHERE slug = $2)
           AND ($6::uuid IS NULL OR EXISTS (SELECT 1 FROM prompt_versions WHERE id = $6))
         ON CONFLICT DO NOTHING",
    )
    .bind(v.id.0)
    .bind(&v.slug)
    .bind(i64::from(v.version))
    .bind(&v.template)
    .bind(json("prompt_versions.variables", &v.variables)?)
    .bind(v.parent.map(|p| p.0))
    .bind(json("prompt_versions.created_by", &v.created_by)?)
    .bind(v.created_at)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(());
    }
    let prompt: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM prompts WHERE slug = $1)")
        .bind(&v.slug)
        .fetch_one(pool)
        .await?;
    if !prompt {
        return Err(not_found("prompt", &v.slug));
    }
    if let Some(parent) = v.parent
        && !sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM prompt_versions WHERE id = $1)")
            .bind(parent.0)
            .fetch_one(pool)
            .await?
    {
        return Err(not_found("prompt version", parent));
    }
    Err(OpError::Refused(paid_core::Error::AlreadyExists {
        entity: "prompt version",
        id: format!("{} ({} v{})", v.id, v.slug, v.version),
    }))
}

async fn put_experiment(pool: &PgPool, e: &Experiment) -> OpResult<()> {
    sqlx::query(
        "INSERT INTO experiments (id, subject, active, created_at, body) VALUES ($1, $2, $3, $4, $5::json)
         ON CONFLICT (id) DO UPDATE SET subject = excluded.subject, active = excluded.active,
             created_at = excluded.created_at, body = excluded.body",
    )
    .bind(e.id.0)
    .bind(&e.subject)
    .bind(is_active(e))
    .bind(e.created_at)
    .bind(json("experiments.body", e)?)
    .execute(pool)
    .await?;
    Ok(())
}

async fn experiments(pool: &PgPool, filter: &ExperimentFilter) -> OpResult<Vec<Experiment>> {
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT body::text FROM experiments
         WHERE ($1::text IS NULL OR subject = $1) AND (NOT $2 OR active)
         ORDER BY created_at, seq",
    )
    .bind(filter.subject.as_deref())
    .bind(filter.active_only)
    .fetch_all(pool)
    .await?;
    bodies.iter().map(|b| decode("experiments.body", b)).collect()
}

/// First write wins: an insert that does nothing on a conflict, then a read
/// of what is stored, in one transaction. Under READ COMMITTED the read
/// takes a new snapshot, so it sees a concurrent first write the insert
/// waited for. No row at all means the experiment does not exist.
async fn assign(pool: &PgPool, a: &Assignment) -> OpResult<Assignment> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO experiment_assignments (experiment_id, issue_key, arm, run_id, assigned_at)
         SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM experiments WHERE id = $1)
         ON CONFLICT (experiment_id, issue_key) DO NOTHING",
    )
    .bind(a.experiment_id.0)
    .bind(&a.issue_key)
    .bind(&a.arm)
    .bind(a.run_id.0)
    .bind(a.assigned_at)
    .execute(&mut *tx)
    .await?;
    let stored: Option<AssignmentRow> =
        sqlx::query_as(SELECT_ASSIGNMENT).bind(a.experiment_id.0).bind(&a.issue_key).fetch_optional(&mut *tx).await?;
    tx.commit().await?;
    stored.map(assignment).ok_or_else(|| not_found("experiment", a.experiment_id))
}

async fn record_sample(pool: &PgPool, s: &ArmSample) -> OpResult<()> {
    let done = sqlx::query(
        "INSERT INTO experiment_samples (experiment_id, run_id, arm, score, recorded_at)
         SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM experiments WHERE id = $1)
         ON CONFLICT (experiment_id, run_id) DO UPDATE SET arm = excluded.arm, score = excluded.score,
             recorded_at = excluded.recorded_at, seq = DEFAULT",
    )
    .bind(s.experiment_id.0)
    .bind(s.run_id.0)
    .bind(&s.arm)
    .bind(s.score)
    .bind(s.recorded_at)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(not_found("experiment", s.experiment_id));
    }
    Ok(())
}

async fn record_run_score(pool: &PgPool, s: &RunScore) -> OpResult<()> {
    let done = sqlx::query(
        "INSERT INTO run_scores (run_id, version_id, project_id, score, feedback, scored_at)
         SELECT $1, $2, $3, $4, $5::json, $6 WHERE EXISTS (SELECT 1 FROM prompt_versions WHERE id = $2)
         ON CONFLICT (run_id) DO UPDATE SET version_id = excluded.version_id, project_id = excluded.project_id,
             score = excluded.score, feedback = excluded.feedback, scored_at = excluded.scored_at, seq = DEFAULT",
    )
    .bind(s.run_id.0)
    .bind(s.prompt_version_id.0)
    .bind(s.project_id.0)
    .bind(s.score)
    .bind(json("run_scores.feedback", &s.feedback)?)
    .bind(s.scored_at)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(not_found("prompt version", s.prompt_version_id));
    }
    Ok(())
}

#[async_trait]
impl LearningStore for PgStore {
    async fn put_prompt(&self, p: &Prompt) -> paid_core::Result<()> {
        Ok(put_prompt(self.pool(), p).await?)
    }

    async fn prompt(&self, slug: &str) -> paid_core::Result<Prompt> {
        let row: Option<PromptRow> =
            sqlx::query_as(concat!("SELECT ", prompt_columns!(), " FROM prompts WHERE slug = $1"))
                .bind(slug)
                .fetch_optional(self.pool())
                .await
                .map_err(Error::from)?;
        Ok(row.map(prompt).ok_or_else(|| not_found("prompt", slug))?)
    }

    async fn prompts(&self) -> paid_core::Result<Vec<Prompt>> {
        let rows: Vec<PromptRow> =
            sqlx::query_as(concat!("SELECT ", prompt_columns!(), " FROM prompts ORDER BY created_at, seq"))
                .fetch_all(self.pool())
                .await
                .map_err(Error::from)?;
        Ok(rows.into_iter().map(prompt).collect())
    }

    async fn create_version(&self, v: &PromptVersion) -> paid_core::Result<()> {
        Ok(create_version(self.pool(), v).await?)
    }

    async fn version(&self, id: PromptVersionId) -> paid_core::Result<PromptVersion> {
        let row: Option<VersionRow> =
            sqlx::query_as(concat!("SELECT ", version_columns!(), " FROM prompt_versions WHERE id = $1"))
                .bind(id.0)
                .fetch_optional(self.pool())
                .await
                .map_err(Error::from)?;
        Ok(row.map(version).transpose()?.ok_or_else(|| not_found("prompt version", id))?)
    }

    async fn versions(&self, slug: &str) -> paid_core::Result<Vec<PromptVersion>> {
        let rows: Vec<VersionRow> = sqlx::query_as(concat!(
            "SELECT ",
            version_columns!(),
            " FROM prompt_versions WHERE slug = $1 ORDER BY version"
        ))
        .bind(slug)
        .fetch_all(self.pool())
        .await
        .map_err(Error::from)?;
        Ok(rows.into_iter().map(version).collect::<OpResult<_>>()?)
    }

    async fn put_experiment(&self, e: &Experiment) -> paid_core::Result<()> {
        Ok(put_experiment(self.pool(), e).await?)
    }

    async fn experiment(&self, id: ExperimentId) -> paid_core::Result<Experiment> {
        let body: Option<String> = sqlx::query_scalar("SELECT body::text FROM experiments WHERE id = $1")
            .bind(id.0)
            .fetch_optional(self.pool())
            .await
            .map_err(Error::from)?;
        let body = body.ok_or_else(|| not_found("experiment", id))?;
        Ok(decode("experiments.body", &body)?)
    }

    async fn experiments(&self, filter: &ExperimentFilter) -> paid_core::Result<Vec<Experiment>> {
        Ok(experiments(self.pool(), filter).await?)
    }

    async fn assign(&self, a: &Assignment) -> paid_core::Result<Assignment> {
        Ok(assign(self.pool(), a).await?)
    }

    async fn assignment(&self, experiment: ExperimentId, issue_key: &str) -> paid_core::Result<Option<Assignment>> {
        let row: Option<AssignmentRow> = sqlx::query_as(SELECT_ASSIGNMENT)
            .bind(experiment.0)
            .bind(issue_key)
            .fetch_optional(self.pool())
            .await
            .map_err(Error::from)?;
        Ok(row.map(assignment))
    }

    async fn record_sample(&self, s: &ArmSample) -> paid_core::Result<()> {
        Ok(record_sample(self.pool(), s).await?)
    }

    async fn samples(&self, experiment: ExperimentId) -> paid_core::Result<Vec<ArmSample>> {
        let rows: Vec<SampleRow> = sqlx::query_as(
            "SELECT experiment_id, arm, run_id, score, recorded_at FROM experiment_samples
             WHERE experiment_id = $1 ORDER BY recorded_at, seq",
        )
        .bind(experiment.0)
        .fetch_all(self.pool())
        .await
        .map_err(Error::from)?;
        Ok(rows.into_iter().map(sample).collect())
    }

    async fn record_run_score(&self, s: &RunScore) -> paid_core::Result<()> {
        Ok(record_run_score(self.pool(), s).await?)
    }

    async fn run_scores(&self, version: PromptVersionId) -> paid_core::Result<Vec<RunScore>> {
        let rows: Vec<ScoreRow> = sqlx::query_as(
            "SELECT run_id, version_id, project_id, score, feedback::text, scored_at FROM run_scores
             WHERE version_id = $1 ORDER BY scored_at, seq",
        )
        .bind(version.0)
        .fetch_all(self.pool())
        .await
        .map_err(Error::from)?;
        Ok(rows.into_iter().map(run_score).collect::<OpResult<_>>()?)
    }
}
