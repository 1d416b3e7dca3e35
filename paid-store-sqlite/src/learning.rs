//! [`LearningStore`] on SQLite (migration `0003_learning.sql`): prompts,
//! immutable prompt versions, experiments, assignments, arm samples and
//! scored runs, on the same database as the [`Store`](paid_core::Store).

use async_trait::async_trait;
use chrono::DateTime;
use paid_core::learning::evolution::RunScore;
use paid_core::learning::experiment::{ArmSample, Assignment, Experiment, ExperimentStatus};
use paid_core::learning::prompts::{Prompt, PromptVersion};
use paid_core::learning::{ExperimentId, PromptVersionId};
use paid_core::ports::learning::{ExperimentFilter, LearningStore};
use paid_core::{ProjectId, RunId, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};
use serde::de::DeserializeOwned;

use crate::error::OpError;
use crate::rows::{all, first, json, millis};
use crate::{Error, SqliteStore};

fn not_found(entity: &'static str, id: impl ToString) -> OpError {
    OpError::Refused(paid_core::Error::NotFound { entity, id: id.to_string() })
}

fn column(row: &Row<'_>, idx: usize) -> String {
    row.as_ref().column_name(idx).map(str::to_string).unwrap_or_else(|_| format!("column {idx}"))
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

fn id<T>(row: &Row<'_>, idx: usize, parse: fn(&str) -> paid_core::Result<T>) -> Result<T, OpError> {
    let text: String = row.get(idx)?;
    Ok(parse(&text).map_err(|e| Error::corrupt(column(row, idx), e))?)
}

fn opt_id<T>(row: &Row<'_>, idx: usize, parse: fn(&str) -> paid_core::Result<T>) -> Result<Option<T>, OpError> {
    match row.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(_) => id(row, idx, parse).map(Some),
    }
}

fn from_json<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> Result<T, OpError> {
    let text: String = row.get(idx)?;
    Ok(serde_json::from_str(&text).map_err(|e| Error::corrupt(column(row, idx), e))?)
}

fn exists(c: &Connection, sql: &str, id: &str) -> Result<bool, OpError> {
    Ok(c.prepare_cached(sql)?.exists([id])?)
}

const PROMPT_COLUMNS: &str = "slug, description, active_version, last_evolved_at, created_at";

fn prompt(row: &Row<'_>) -> Result<Prompt, OpError> {
    Ok(Prompt {
        slug: row.get(0)?,
        description: row.get(1)?,
        active_version: opt_id(row, 2, PromptVersionId::parse)?,
        last_evolved_at: opt_time(row, 3)?,
        created_at: time(row, 4)?,
    })
}

const VERSION_COLUMNS: &str = "id, slug, version, template, variables, parent, created_by, created_at";

fn version(row: &Row<'_>) -> Result<PromptVersion, OpError> {
    let number: i64 = row.get(2)?;
    Ok(PromptVersion {
        id: id(row, 0, PromptVersionId::parse)?,
        slug: row.get(1)?,
        version: u32::try_from(number).map_err(|_| Error::corrupt("prompt_versions.version", number))?,
        template: row.get(3)?,
        variables: from_json(row, 4)?,
        parent: opt_id(row, 5, PromptVersionId::parse)?,
        created_by: from_json(row, 6)?,
        created_at: time(row, 7)?,
    })
}

fn assignment(row: &Row<'_>) -> Result<Assignment, OpError> {
    Ok(Assignment {
        experiment_id: id(row, 0, ExperimentId::parse)?,
        issue_key: row.get(1)?,
        arm: row.get(2)?,
        run_id: id(row, 3, RunId::parse)?,
        assigned_at: time(row, 4)?,
    })
}

fn sample(row: &Row<'_>) -> Result<ArmSample, OpError> {
    Ok(ArmSample {
        experiment_id: id(row, 0, ExperimentId::parse)?,
        arm: row.get(1)?,
        run_id: id(row, 2, RunId::parse)?,
        score: row.get(3)?,
        recorded_at: time(row, 4)?,
    })
}

fn run_score(row: &Row<'_>) -> Result<RunScore, OpError> {
    Ok(RunScore {
        run_id: id(row, 0, RunId::parse)?,
        prompt_version_id: id(row, 1, PromptVersionId::parse)?,
        project_id: id(row, 2, ProjectId::parse)?,
        score: row.get(3)?,
        feedback: from_json(row, 4)?,
        scored_at: time(row, 5)?,
    })
}

fn is_active(e: &Experiment) -> bool {
    matches!(e.status, ExperimentStatus::Running | ExperimentStatus::AwaitingApproval { .. })
}

fn create_version(c: &Connection, v: &PromptVersion) -> Result<(), OpError> {
    if !exists(c, "SELECT 1 FROM prompts WHERE slug = ?1", &v.slug)? {
        return Err(not_found("prompt", &v.slug));
    }
    if let Some(parent) = v.parent
        && !exists(c, "SELECT 1 FROM prompt_versions WHERE id = ?1", &parent.to_string())?
    {
        return Err(not_found("prompt version", parent));
    }
    let taken = c
        .prepare_cached("SELECT 1 FROM prompt_versions WHERE id = ?1 OR (slug = ?2 AND version = ?3)")?
        .exists(params![v.id.to_string(), v.slug, v.version])?;
    if taken {
        return Err(OpError::Refused(paid_core::Error::AlreadyExists {
            entity: "prompt version",
            id: format!("{} ({} v{})", v.id, v.slug, v.version),
        }));
    }
    c.prepare_cached(&format!(
        "INSERT INTO prompt_versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        v.id.to_string(),
        v.slug,
        v.version,
        v.template,
        json("prompt_versions.variables", &v.variables)?,
        v.parent.map(|p| p.to_string()),
        json("prompt_versions.created_by", &v.created_by)?,
        millis(v.created_at),
    ])?;
    Ok(())
}

fn experiment_exists(c: &Connection, id: ExperimentId) -> Result<bool, OpError> {
    exists(c, "SELECT 1 FROM experiments WHERE id = ?1", &id.to_string())
}

fn assign(c: &Connection, a: &Assignment) -> Result<Assignment, OpError> {
    if !experiment_exists(c, a.experiment_id)? {
        return Err(not_found("experiment", a.experiment_id));
    }
    c.prepare_cached(
        "INSERT INTO experiment_assignments (experiment_id, issue_key, arm, run_id, assigned_at)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (experiment_id, issue_key) DO NOTHING",
    )?
    .execute(params![
        a.experiment_id.to_string(),
        a.issue_key,
        a.arm,
        a.run_id.to_string(),
        millis(a.assigned_at)
    ])?;
    let stored = first(
        &mut *c.prepare_cached(
            "SELECT experiment_id, issue_key, arm, run_id, assigned_at FROM experiment_assignments
             WHERE experiment_id = ?1 AND issue_key = ?2",
        )?,
        params![a.experiment_id.to_string(), a.issue_key],
        assignment,
    )?;
    stored.ok_or_else(|| Error::corrupt("experiment_assignments", "the assignment just written is gone").into())
}

#[async_trait]
impl LearningStore for SqliteStore {
    async fn put_prompt(&self, p: &Prompt) -> paid_core::Result<()> {
        let p = p.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO prompts ({PROMPT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (slug) DO UPDATE SET description = excluded.description,
                     active_version = excluded.active_version, last_evolved_at = excluded.last_evolved_at,
                     created_at = excluded.created_at"
            ))?
            .execute(params![
                p.slug,
                p.description,
                p.active_version.map(|v| v.to_string()),
                p.last_evolved_at.map(millis),
                millis(p.created_at),
            ])?;
            Ok(())
        })
        .await
    }

    async fn prompt(&self, slug: &str) -> paid_core::Result<Prompt> {
        let slug = slug.to_string();
        self.read(move |c| {
            let sql = format!("SELECT {PROMPT_COLUMNS} FROM prompts WHERE slug = ?1");
            first(&mut *c.prepare_cached(&sql)?, [&slug], prompt)?.ok_or_else(|| not_found("prompt", &slug))
        })
        .await
    }

    async fn prompts(&self) -> paid_core::Result<Vec<Prompt>> {
        self.read(|c| {
            let sql = format!("SELECT {PROMPT_COLUMNS} FROM prompts ORDER BY created_at, rowid");
            all(&mut *c.prepare_cached(&sql)?, [], prompt)
        })
        .await
    }

    async fn create_version(&self, v: &PromptVersion) -> paid_core::Result<()> {
        let v = v.clone();
        self.write(move |c| create_version(c, &v)).await
    }

    async fn version(&self, id: PromptVersionId) -> paid_core::Result<PromptVersion> {
        self.read(move |c| {
            let sql = format!("SELECT {VERSION_COLUMNS} FROM prompt_versions WHERE id = ?1");
            first(&mut *c.prepare_cached(&sql)?, [id.to_string()], version)?
                .ok_or_else(|| not_found("prompt version", id))
        })
        .await
    }

    async fn versions(&self, slug: &str) -> paid_core::Result<Vec<PromptVersion>> {
        let slug = slug.to_string();
        self.read(move |c| {
            let sql = format!("SELECT {VERSION_COLUMNS} FROM prompt_versions WHERE slug = ?1 ORDER BY version");
            all(&mut *c.prepare_cached(&sql)?, [&slug], version)
        })
        .await
    }

    async fn put_experiment(&self, e: &Experiment) -> paid_core::Result<()> {
        let e = e.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO experiments (id, subject, active, created_at, body) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET subject = excluded.subject, active = excluded.active,
                     created_at = excluded.created_at, body = excluded.body",
            )?
            .execute(params![
                e.id.to_string(),
                e.subject,
                is_active(&e),
                millis(e.created_at),
                json("experiments.body", &e)?,
            ])?;
            Ok(())
        })
        .await
    }

    async fn experiment(&self, id: ExperimentId) -> paid_core::Result<Experiment> {
        self.read(move |c| {
            first(&mut *c.prepare_cached("SELECT body FROM experiments WHERE id = ?1")?, [id.to_string()], |r| {
                from_json(r, 0)
            })?
            .ok_or_else(|| not_found("experiment", id))
        })
        .await
    }

    async fn experiments(&self, filter: &ExperimentFilter) -> paid_core::Result<Vec<Experiment>> {
        let filter = filter.clone();
        self.read(move |c| {
            let mut sql = String::from("SELECT body FROM experiments WHERE 1 = 1");
            let mut args: Vec<Value> = Vec::new();
            if let Some(subject) = &filter.subject {
                args.push(Value::Text(subject.clone()));
                sql.push_str(&format!(" AND subject = ?{}", args.len()));
            }
            if filter.active_only {
                sql.push_str(" AND active = 1");
            }
            sql.push_str(" ORDER BY created_at, rowid");
            all(&mut *c.prepare_cached(&sql)?, params_from_iter(args), |r| from_json(r, 0))
        })
        .await
    }

    async fn assign(&self, a: &Assignment) -> paid_core::Result<Assignment> {
        let a = a.clone();
        self.write(move |c| assign(c, &a)).await
    }

    async fn assignment(&self, experiment: ExperimentId, issue_key: &str) -> paid_core::Result<Option<Assignment>> {
        let key = issue_key.to_string();
        self.read(move |c| {
            first(
                &mut *c.prepare_cached(
                    "SELECT experiment_id, issue_key, arm, run_id, assigned_at FROM experiment_assignments
                     WHERE experiment_id = ?1 AND issue_key = ?2",
                )?,
                params![experiment.to_string(), key],
                assignment,
            )
        })
        .await
    }

    async fn record_sample(&self, s: &ArmSample) -> paid_core::Result<()> {
        let s = s.clone();
        self.write(move |c| {
            if !experiment_exists(c, s.experiment_id)? {
                return Err(not_found("experiment", s.experiment_id));
            }
            c.prepare_cached(
                "INSERT OR REPLACE INTO experiment_samples (experiment_id, run_id, arm, score, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                s.experiment_id.to_string(),
                s.run_id.to_string(),
                s.arm,
                s.score,
                millis(s.recorded_at)
            ])?;
            Ok(())
        })
        .await
    }

    async fn samples(&self, experiment: ExperimentId) -> paid_core::Result<Vec<ArmSample>> {
        self.read(move |c| {
            all(
                &mut *c.prepare_cached(
                    "SELECT experiment_id, arm, run_id, score, recorded_at FROM experiment_samples
                     WHERE experiment_id = ?1 ORDER BY recorded_at, rowid",
                )?,
                [experiment.to_string()],
                sample,
            )
        })
        .await
    }

    async fn record_run_score(&self, s: &RunScore) -> paid_core::Result<()> {
        let s = s.clone();
        self.write(move |c| {
            let version = s.prompt_version_id.to_string();
            if !exists(c, "SELECT 1 FROM prompt_versions WHERE id = ?1", &version)? {
                return Err(not_found("prompt version", version));
            }
            c.prepare_cached(
                "INSERT OR REPLACE INTO run_scores (run_id, version_id, project_id, score, feedback, scored_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                s.run_id.to_string(),
                version,
                s.project_id.to_string(),
                s.score,
                json("run_scores.feedback", &s.feedback)?,
                millis(s.scored_at),
            ])?;
            Ok(())
        })
        .await
    }

    async fn run_scores(&self, version: PromptVersionId) -> paid_core::Result<Vec<RunScore>> {
        self.read(move |c| {
            all(
                &mut *c.prepare_cached(
                    "SELECT run_id, version_id, project_id, score, feedback, scored_at FROM run_scores
                     WHERE version_id = ?1 ORDER BY scored_at, rowid",
                )?,
                [version.to_string()],
                run_score,
            )
        })
        .await
    }
}
