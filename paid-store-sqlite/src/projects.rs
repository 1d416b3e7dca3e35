//! Projects and their tracked issues.

use paid_core::{Project, ProjectId, TrackedIssue};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::OpError;
use crate::rows::{self, AUTHOR_PIN_COLUMNS, ISSUE_COLUMNS, PROJECT_COLUMNS, ProjectConfig, int, json, millis};

/// Fails with `NotFound` unless the project exists.
pub(crate) fn require(c: &Connection, id: ProjectId) -> Result<(), OpError> {
    let found =
        c.prepare_cached("SELECT 1 FROM projects WHERE id = ?1")?.query_row([id.to_string()], |_| Ok(())).optional()?;
    found.ok_or_else(|| not_found(id))
}

fn not_found(id: ProjectId) -> OpError {
    OpError::Refused(paid_core::Error::NotFound { entity: "project", id: id.to_string() })
}

pub(crate) fn put(c: &Connection, p: &Project) -> Result<(), OpError> {
    // An upsert, not `INSERT OR REPLACE`: replacing would delete the row and
    // cascade to the project's runs.
    c.prepare_cached(
        "INSERT INTO projects (id, repo_owner, repo_name, created_at, config) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET repo_owner = excluded.repo_owner, repo_name = excluded.repo_name,
             created_at = excluded.created_at, config = excluded.config",
    )?
    .execute(params![
        p.id.to_string(),
        p.repo.owner,
        p.repo.name,
        millis(p.created_at),
        json("project config", &ProjectConfig::of(p))?
    ])?;
    Ok(())
}

pub(crate) fn get(c: &Connection, id: ProjectId) -> Result<Project, OpError> {
    let mut stmt = c.prepare_cached(&format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?1"))?;
    rows::first(&mut stmt, [id.to_string()], rows::project)?.ok_or_else(|| not_found(id))
}

pub(crate) fn list(c: &Connection) -> Result<Vec<Project>, OpError> {
    let mut stmt = c.prepare_cached(&format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY created_at, id"))?;
    rows::all(&mut stmt, [], rows::project)
}

pub(crate) fn delete(c: &Connection, id: ProjectId) -> Result<(), OpError> {
    require(c, id)?;
    let active: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM runs WHERE project_id = ?1 AND finished_at IS NULL")?
        .query_row([id.to_string()], |r| r.get(0))?;
    if active > 0 {
        return Err(OpError::Refused(paid_core::Error::InvalidInput {
            what: format!("project {id}"),
            message: format!("it has {active} active run(s); cancel them before deleting the project"),
        }));
    }
    // Issues, runs and everything recorded about them go by cascade.
    c.prepare_cached("DELETE FROM projects WHERE id = ?1")?.execute([id.to_string()])?;
    Ok(())
}

pub(crate) fn put_issue(c: &Connection, i: &TrackedIssue) -> Result<(), OpError> {
    require(c, i.project_id)?;
    c.prepare_cached(&format!(
        "INSERT INTO issues ({ISSUE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (project_id, number) DO UPDATE SET title = excluded.title, body = excluded.body,
             author = excluded.author, labels = excluded.labels, state = excluded.state, url = excluded.url,
             trusted = excluded.trusted, updated_at = excluded.updated_at, author_id = excluded.author_id"
    ))?
    .execute(params![
        i.project_id.to_string(),
        int("issue number", i.number)?,
        i.title,
        i.body,
        i.author,
        json("issue labels", &i.labels)?,
        rows::issue_state_str(i.state),
        i.url,
        i.trusted,
        millis(i.updated_at),
        i.author_id.map(|id| int("issue author id", id)).transpose()?,
    ])?;
    Ok(())
}

/// Pins `login` (lowercased) to `user_id` unless it is pinned; the pinned id.
pub(crate) fn pin_author(
    c: &Connection,
    project: ProjectId,
    login: &str,
    user_id: u64,
    at: paid_core::Timestamp,
) -> Result<u64, OpError> {
    require(c, project)?;
    let login = login.to_ascii_lowercase();
    c.prepare_cached(
        "INSERT INTO author_pins (project_id, login, user_id, pinned_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (project_id, login) DO NOTHING",
    )?
    .execute(params![project.to_string(), login, int("author user id", user_id)?, millis(at)])?;
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {AUTHOR_PIN_COLUMNS} FROM author_pins WHERE project_id = ?1 AND login = ?2"
    ))?;
    let pin = rows::first(&mut stmt, params![project.to_string(), login], rows::author_pin)?;
    pin.map(|p| p.user_id).ok_or_else(|| not_found(project))
}

pub(crate) fn author_pins(c: &Connection, project: ProjectId) -> Result<Vec<paid_core::AuthorPin>, OpError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {AUTHOR_PIN_COLUMNS} FROM author_pins WHERE project_id = ?1 ORDER BY login"
    ))?;
    rows::all(&mut stmt, [project.to_string()], rows::author_pin)
}

pub(crate) fn issue(c: &Connection, project: ProjectId, number: u64) -> Result<TrackedIssue, OpError> {
    let mut stmt =
        c.prepare_cached(&format!("SELECT {ISSUE_COLUMNS} FROM issues WHERE project_id = ?1 AND number = ?2"))?;
    rows::first(&mut stmt, params![project.to_string(), int("issue number", number)?], rows::issue)?.ok_or_else(|| {
        OpError::Refused(paid_core::Error::NotFound { entity: "issue", id: format!("#{number} of project {project}") })
    })
}

pub(crate) fn issues(c: &Connection, project: ProjectId) -> Result<Vec<TrackedIssue>, OpError> {
    let mut stmt =
        c.prepare_cached(&format!("SELECT {ISSUE_COLUMNS} FROM issues WHERE project_id = ?1 ORDER BY number"))?;
    rows::all(&mut stmt, [project.to_string()], rows::issue)
}
