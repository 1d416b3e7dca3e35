//! Projects and their tracked issues.

use paid_core::{Project, ProjectId, TrackedIssue};
use sqlx::{Acquire, PgPool};

use crate::error::{OpError, OpResult};
use crate::rows::{self, ProjectConfig, int, issue_columns, json, project_columns};

pub(crate) fn not_found(id: ProjectId) -> OpError {
    OpError::Refused(paid_core::Error::NotFound { entity: "project", id: id.to_string() })
}

pub(crate) async fn put(pool: &PgPool, p: &Project) -> OpResult<()> {
    let max = i32::try_from(p.max_concurrent_runs).map_err(|_| {
        OpError::Refused(paid_core::Error::InvalidInput {
            what: "project.max_concurrent_runs".into(),
            message: format!("{} exceeds {}", p.max_concurrent_runs, i32::MAX),
        })
    })?;
    sqlx::query(
        "INSERT INTO projects (id, repo_owner, repo_name, max_concurrent_runs, created_at, config)
         VALUES ($1, $2, $3, $4, $5, $6::json)
         ON CONFLICT (id) DO UPDATE SET repo_owner = excluded.repo_owner, repo_name = excluded.repo_name,
             max_concurrent_runs = excluded.max_concurrent_runs, created_at = excluded.created_at,
             config = excluded.config",
    )
    .bind(p.id.0)
    .bind(&p.repo.owner)
    .bind(&p.repo.name)
    .bind(max)
    .bind(p.created_at)
    .bind(json("project config", &ProjectConfig::of(p))?)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn get(pool: &PgPool, id: ProjectId) -> OpResult<Project> {
    let row = sqlx::query(concat!("SELECT ", project_columns!(), " FROM projects WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(rows::project).transpose()?.ok_or_else(|| not_found(id))
}

pub(crate) async fn list(pool: &PgPool) -> OpResult<Vec<Project>> {
    let all = sqlx::query(concat!("SELECT ", project_columns!(), " FROM projects ORDER BY created_at, id"))
        .fetch_all(pool)
        .await?;
    all.iter().map(rows::project).collect()
}

/// Deletes a project without active runs, and by cascade its issues and
/// runs with everything recorded about them. The project row is locked
/// first, so a run queued concurrently either commits before the check (and
/// is counted) or fails on the missing project after the delete.
pub(crate) async fn delete(pool: &PgPool, id: ProjectId) -> OpResult<()> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let found =
        sqlx::query("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE").bind(id.0).fetch_optional(&mut *tx).await?;
    if found.is_none() {
        return Err(not_found(id));
    }
    let active: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE project_id = $1 AND finished_at IS NULL")
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await?;
    if active > 0 {
        return Err(OpError::Refused(paid_core::Error::InvalidInput {
            what: format!("project {id}"),
            message: format!("it has {active} active run(s); cancel them before deleting the project"),
        }));
    }
    sqlx::query("DELETE FROM projects WHERE id = $1").bind(id.0).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn put_issue(pool: &PgPool, i: &TrackedIssue) -> OpResult<()> {
    let done = sqlx::query(
        "INSERT INTO issues (project_id, number, title, body, author, labels, state, url, trusted, updated_at,
             author_id)
         SELECT $1, $2, $3, $4, $5, $6::json, $7, $8, $9, $10, $11
         WHERE EXISTS (SELECT 1 FROM projects WHERE id = $1)
         ON CONFLICT (project_id, number) DO UPDATE SET title = excluded.title, body = excluded.body,
             author = excluded.author, labels = excluded.labels, state = excluded.state, url = excluded.url,
             trusted = excluded.trusted, updated_at = excluded.updated_at, author_id = excluded.author_id",
    )
    .bind(i.project_id.0)
    .bind(int("issue number", i.number)?)
    .bind(&i.title)
    .bind(&i.body)
    .bind(&i.author)
    .bind(json("issue labels", &i.labels)?)
    .bind(rows::issue_state_str(i.state))
    .bind(&i.url)
    .bind(i.trusted)
    .bind(i.updated_at)
    .bind(i.author_id.map(|id| int("issue author id", id)).transpose()?)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(not_found(i.project_id));
    }
    Ok(())
}

/// Pins `login` (lowercased) to `user_id` unless it is pinned; the pinned
/// id. Two statements: a conflicting insert waits for the winner to commit,
/// and the select that follows (a new snapshot) sees it.
pub(crate) async fn pin_author(
    pool: &PgPool,
    project: ProjectId,
    login: &str,
    user_id: u64,
    at: paid_core::Timestamp,
) -> OpResult<u64> {
    let login = login.to_ascii_lowercase();
    sqlx::query(
        "INSERT INTO author_pins (project_id, login, user_id, pinned_at)
         SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM projects WHERE id = $1)
         ON CONFLICT (project_id, login) DO NOTHING",
    )
    .bind(project.0)
    .bind(&login)
    .bind(int("author user id", user_id)?)
    .bind(at)
    .execute(pool)
    .await?;
    let row = sqlx::query(
        "SELECT project_id, login, user_id, pinned_at FROM author_pins WHERE project_id = $1 AND login = $2",
    )
    .bind(project.0)
    .bind(&login)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(rows::author_pin).transpose()?.map(|p| p.user_id).ok_or_else(|| not_found(project))
}

pub(crate) async fn author_pins(pool: &PgPool, project: ProjectId) -> OpResult<Vec<paid_core::AuthorPin>> {
    let all = sqlx::query(
        "SELECT project_id, login, user_id, pinned_at FROM author_pins WHERE project_id = $1 ORDER BY login COLLATE \"C\"",
    )
    .bind(project.0)
    .fetch_all(pool)
    .await?;
    all.iter().map(rows::author_pin).collect()
}

pub(crate) async fn issue(pool: &PgPool, project: ProjectId, number: u64) -> OpResult<TrackedIssue> {
    let row = sqlx::query(concat!("SELECT ", issue_columns!(), " FROM issues WHERE project_id = $1 AND number = $2"))
        .bind(project.0)
        .bind(int("issue number", number)?)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(rows::issue).transpose()?.ok_or_else(|| {
        OpError::Refused(paid_core::Error::NotFound { entity: "issue", id: format!("#{number} of project {project}") })
    })
}

pub(crate) async fn issues(pool: &PgPool, project: ProjectId) -> OpResult<Vec<TrackedIssue>> {
    let all = sqlx::query(concat!("SELECT ", issue_columns!(), " FROM issues WHERE project_id = $1 ORDER BY number"))
        .bind(project.0)
        .fetch_all(pool)
        .await?;
    all.iter().map(rows::issue).collect()
}
