//! Runs: queueing, reading, state transitions, patches and cancellation.

use paid_core::{Failure, NewRun, Run, RunFilter, RunId, RunPatch, RunState, Timestamp, Transition};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::error::OpError;
use crate::leases::{check_lease, lease_held};
use crate::projects;
use crate::rows::{self, RUN_COLUMNS, int, json, millis};

pub(crate) fn not_found(id: RunId) -> OpError {
    OpError::Refused(paid_core::Error::NotFound { entity: "run", id: id.to_string() })
}

/// Fails with `NotFound` unless the run exists.
pub(crate) fn require(c: &Connection, id: RunId) -> Result<(), OpError> {
    let found =
        c.prepare_cached("SELECT 1 FROM runs WHERE id = ?1")?.query_row([id.to_string()], |_| Ok(())).optional()?;
    found.ok_or_else(|| not_found(id))
}

pub(crate) fn get(c: &Connection, id: RunId) -> Result<Run, OpError> {
    let mut stmt = c.prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?;
    rows::first(&mut stmt, [id.to_string()], rows::run)?.ok_or_else(|| not_found(id))
}

/// Writes every field of `run` a step can change.
pub(crate) fn save(c: &Connection, run: &Run) -> Result<(), OpError> {
    c.prepare_cached(
        "UPDATE runs SET state = ?2, branch = ?3, model = ?4, pr_url = ?5, iterations = ?6, failure = ?7,
             lease_owner = ?8, lease_expires_at = ?9, updated_at = ?10, finished_at = ?11, context = ?12
         WHERE id = ?1",
    )?
    .execute(params![
        run.id.to_string(),
        run.state.as_str(),
        run.branch,
        run.model,
        run.pr_url,
        run.iterations,
        run.failure.as_ref().map(|f| json("run failure", f)).transpose()?,
        run.lease_owner,
        run.lease_expires_at.map(millis),
        millis(run.updated_at),
        run.finished_at.map(millis),
        json("run context", &run.context)?,
    ])?;
    Ok(())
}

pub(crate) fn create(c: &Connection, new: &NewRun) -> Result<Run, OpError> {
    projects::require(c, new.project_id)?;
    if require(c, new.id).is_ok() {
        return Err(OpError::Refused(paid_core::Error::AlreadyExists { entity: "run", id: new.id.to_string() }));
    }
    let kind = rows::kind_str(new.kind);
    let issue = int("issue number", new.issue_number)?;
    let active: Option<String> = c
        .prepare_cached(
            "SELECT id FROM runs
             WHERE project_id = ?1 AND issue_number = ?2 AND kind = ?3 AND finished_at IS NULL",
        )?
        .query_row(params![new.project_id.to_string(), issue, kind], |r| r.get(0))
        .optional()?;
    if let Some(active) = active {
        return Err(OpError::Refused(paid_core::Error::AlreadyExists {
            entity: "active run",
            id: format!("{active} ({kind} of issue #{} in project {})", new.issue_number, new.project_id),
        }));
    }
    let run = Run::from_new(new);
    c.prepare_cached(
        "INSERT INTO runs (id, project_id, issue_number, kind, state, priority, created_at, updated_at, context)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        run.id.to_string(),
        run.project_id.to_string(),
        issue,
        kind,
        run.state.as_str(),
        run.priority,
        millis(run.created_at),
        millis(run.updated_at),
        json("run context", &run.context)?,
    ])?;
    Ok(run)
}

pub(crate) fn list(c: &Connection, filter: &RunFilter) -> Result<Vec<Run>, OpError> {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    if let Some(project) = filter.project_id {
        params.push(Value::Text(project.to_string()));
        conditions.push(format!("project_id = ?{}", params.len()));
    }
    if let Some(issue) = filter.issue_number {
        params.push(Value::Integer(int("issue number", issue)?));
        conditions.push(format!("issue_number = ?{}", params.len()));
    }
    if filter.active_only {
        conditions.push("finished_at IS NULL".into());
    }
    if let Some(before) = filter.before {
        params.push(Value::Text(before.to_string()));
        conditions
            .push(format!("(created_at, id) < (SELECT created_at, id FROM runs WHERE id = ?{n})", n = params.len()));
    }
    let filter_sql = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    // A negative LIMIT is no limit.
    params.push(Value::Integer(filter.limit.map_or(-1, i64::from)));
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs {filter_sql} ORDER BY created_at DESC, id DESC LIMIT ?{}",
        params.len()
    );
    let mut stmt = c.prepare_cached(&sql)?;
    rows::all(&mut stmt, params_from_iter(params), rows::run)
}

/// Checks in the order the port documents: the run exists, the state
/// machine allows the move, the lease is held (unless the run leaves a
/// parked state, which holds none), the run is in `from`. Moving into or
/// out of a parked state leaves the run unleased.
pub(crate) fn transition(c: &Connection, t: &Transition) -> Result<Run, OpError> {
    let mut run = get(c, t.run_id)?;
    let illegal = |from: RunState| {
        OpError::Refused(paid_core::Error::IllegalTransition {
            run: t.run_id.to_string(),
            from: from.to_string(),
            to: t.to.to_string(),
        })
    };
    if !t.from.can_transition_to(t.to) {
        return Err(illegal(t.from));
    }
    if !t.from.is_parked() {
        check_lease(&run, &t.owner, t.at)?;
    }
    if run.state != t.from {
        return Err(illegal(run.state));
    }
    run.state = t.to;
    run.updated_at = t.at;
    apply(&mut run, &t.patch);
    if t.to.is_terminal() {
        run.finished_at = Some(t.at);
    }
    if t.to.is_parked() || t.from.is_parked() {
        run.lease_owner = None;
        run.lease_expires_at = None;
    }
    save(c, &run)?;
    Ok(run)
}

pub(crate) fn patch(c: &Connection, id: RunId, owner: &str, patch: &RunPatch, at: Timestamp) -> Result<Run, OpError> {
    let mut run = get(c, id)?;
    check_lease(&run, owner, at)?;
    apply(&mut run, patch);
    run.updated_at = at;
    save(c, &run)?;
    Ok(run)
}

/// Sets the fields `patch` sets.
fn apply(run: &mut Run, patch: &RunPatch) {
    let RunPatch { branch, model, pr_url, iterations, failure, context } = patch.clone();
    if let Some(context) = context {
        run.context = context;
    }
    if branch.is_some() {
        run.branch = branch;
    }
    if model.is_some() {
        run.model = model;
    }
    if pr_url.is_some() {
        run.pr_url = pr_url;
    }
    if let Some(iterations) = iterations {
        run.iterations = iterations;
    }
    if failure.is_some() {
        run.failure = failure;
    }
}

pub(crate) fn request_cancel(c: &Connection, id: RunId, at: Timestamp) -> Result<Run, OpError> {
    let mut run = get(c, id)?;
    if run.state.is_terminal() {
        return Ok(run);
    }
    c.prepare_cached("UPDATE runs SET cancel_requested = 1 WHERE id = ?1")?.execute([id.to_string()])?;
    if run.state.is_parked() {
        // No worker holds it: a worker claims it in cleanup.
        run.failure = Some(Failure::cancelled(run.state));
        run.state = RunState::Cleaning;
        run.updated_at = at;
        run.lease_owner = None;
        run.lease_expires_at = None;
        save(c, &run)?;
        return Ok(run);
    }
    if lease_held(&run, at) || run.state == RunState::Cleaning {
        // Its worker sees the flag, stops the agent and cleans up (or, in
        // cleanup already, whoever claims it next finishes the cleanup).
        return Ok(run);
    }
    run.state = RunState::Cancelled;
    run.updated_at = at;
    run.finished_at = Some(at);
    run.lease_owner = None;
    run.lease_expires_at = None;
    save(c, &run)?;
    Ok(run)
}

pub(crate) fn cancel_requested(c: &Connection, id: RunId) -> Result<bool, OpError> {
    let flag = c
        .prepare_cached("SELECT cancel_requested FROM runs WHERE id = ?1")?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()?;
    flag.ok_or_else(|| not_found(id))
}
