//! The step journal: a record before each side effect, marked after it.

use paid_core::{RunId, RunState, StepRecord, StepStatus, Timestamp};
use rusqlite::{Connection, params};

use crate::error::OpError;
use crate::leases::check_lease;
use crate::rows::{self, STEP_COLUMNS, json, millis};
use crate::runs;

pub(crate) fn begin(
    c: &Connection,
    id: RunId,
    owner: &str,
    step: RunState,
    idempotency_key: Option<&str>,
    at: Timestamp,
) -> Result<StepRecord, OpError> {
    let run = runs::get(c, id)?;
    check_lease(&run, owner, at)?;
    let seq: u64 = c
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id = ?1")?
        .query_row([id.to_string()], |r| r.get(0))?;
    let record = StepRecord {
        run_id: id,
        seq,
        step,
        idempotency_key: idempotency_key.map(str::to_string),
        status: StepStatus::Started,
        output: serde_json::Value::Null,
        error: None,
        started_at: at,
        finished_at: None,
    };
    c.prepare_cached(&format!("INSERT INTO steps ({STEP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"))?
        .execute(params![
            id.to_string(),
            seq,
            step.as_str(),
            record.idempotency_key,
            rows::status_str(record.status),
            json("step output", &record.output)?,
            record.error,
            millis(at),
            record.finished_at.map(millis),
        ])?;
    Ok(record)
}

/// The journal's last record if it is `step` and done; otherwise a new
/// `started` record of `step`.
pub(crate) fn resume_or_begin(
    c: &Connection,
    id: RunId,
    owner: &str,
    step: RunState,
    idempotency_key: Option<&str>,
    at: Timestamp,
) -> Result<StepRecord, OpError> {
    let mut stmt =
        c.prepare_cached(&format!("SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?1 ORDER BY seq DESC LIMIT 1"))?;
    if let Some(last) = rows::first(&mut stmt, [id.to_string()], rows::step)?
        && last.step == step
        && last.status == StepStatus::Done
    {
        return Ok(last);
    }
    begin(c, id, owner, step, idempotency_key, at)
}

/// Marks the latest record of `step` that is still `started`.
pub(crate) fn finish(
    c: &Connection,
    id: RunId,
    owner: &str,
    step: RunState,
    result: Result<serde_json::Value, String>,
    at: Timestamp,
) -> Result<StepRecord, OpError> {
    let run = runs::get(c, id)?;
    check_lease(&run, owner, at)?;
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?1 AND step = ?2 AND status = ?3 ORDER BY seq DESC LIMIT 1"
    ))?;
    let started = rows::first(
        &mut stmt,
        params![id.to_string(), step.as_str(), rows::status_str(StepStatus::Started)],
        rows::step,
    )?;
    let mut record = started.ok_or_else(|| {
        OpError::Refused(paid_core::Error::NotFound { entity: "step", id: format!("{step} (started) of run {id}") })
    })?;
    record.finish(result, at);
    c.prepare_cached(
        "UPDATE steps SET status = ?3, output = ?4, error = ?5, finished_at = ?6 WHERE run_id = ?1 AND seq = ?2",
    )?
    .execute(params![
        id.to_string(),
        record.seq,
        rows::status_str(record.status),
        json("step output", &record.output)?,
        record.error,
        millis(at),
    ])?;
    Ok(record)
}

pub(crate) fn list(c: &Connection, id: RunId) -> Result<Vec<StepRecord>, OpError> {
    let mut stmt = c.prepare_cached(&format!("SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?1 ORDER BY seq"))?;
    rows::all(&mut stmt, [id.to_string()], rows::step)
}
