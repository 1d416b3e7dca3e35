//! Sums over usage records ([`Ledger::spend`], [`Ledger::daily_costs`]), each
//! one `GROUP BY` statement over `usage_records` joined to `runs`.
//!
//! SQLite's `SUM` fails on integer overflow, where the port's sums saturate.
//! So every column is summed in two halves, `x >> 32` (signed) and
//! `x & 0xFFFFFFFF`, neither of which can overflow below 2^31 records a
//! group; the halves are put back together exactly in `i128` and clamped to
//! the field's type.
//!
//! [`Ledger::spend`]: paid_core::Ledger::spend
//! [`Ledger::daily_costs`]: paid_core::Ledger::daily_costs

use chrono::NaiveDate;
use paid_core::{CostQuery, DailyCost, ProjectId, RunId, Spend, SpendGroup, SpendQuery, Timestamp, Usage, UsageTotals};
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params_from_iter};

use crate::Error;
use crate::error::OpError;
use crate::rows::{self, millis};

/// The record counts, then each summed column as its high and low halves,
/// in the order [`totals`] reads them.
const TOTALS: &str = "COUNT(*), COUNT(*) - COUNT(u.cost_micros), \
     SUM(u.cost_micros >> 32), SUM(u.cost_micros & 4294967295), \
     SUM(u.input >> 32), SUM(u.input & 4294967295), \
     SUM(u.cache_read >> 32), SUM(u.cache_read & 4294967295), \
     SUM(u.cache_write >> 32), SUM(u.cache_write & 4294967295), \
     SUM(u.output >> 32), SUM(u.output & 4294967295), \
     SUM(u.reasoning >> 32), SUM(u.reasoning & 4294967295)";

/// The UTC day of `u.at` (Unix milliseconds) as days since 1970-01-01,
/// rounded down (SQLite's `/` and `%` round toward zero).
const DAY: &str = "(u.at - ((u.at % 86400000) + 86400000) % 86400000) / 86400000";

const FROM: &str = "FROM usage_records u JOIN runs r ON r.id = u.run_id";

/// The `WHERE` clause of the given filters, and its parameters.
fn filter(since: Option<Timestamp>, project: Option<ProjectId>, run: Option<RunId>) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    if let Some(since) = since {
        params.push(Value::Integer(millis(since)));
        conditions.push(format!("u.at >= ?{}", params.len()));
    }
    if let Some(project) = project {
        params.push(Value::Text(project.to_string()));
        conditions.push(format!("r.project_id = ?{}", params.len()));
    }
    if let Some(run) = run {
        params.push(Value::Text(run.to_string()));
        conditions.push(format!("u.run_id = ?{}", params.len()));
    }
    let sql = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    (sql, params)
}

pub(crate) fn spend(c: &Connection, req: &SpendQuery) -> Result<Vec<Spend>, OpError> {
    let (run, keys) = match req.group {
        SpendGroup::Project => ("NULL", "r.project_id"),
        SpendGroup::Run => ("u.run_id", "r.project_id, u.run_id"),
    };
    let (filter, params) = filter(req.since, req.project_id, req.run_id);
    let sql = format!("SELECT r.project_id, {run}, {TOTALS} {FROM} {filter} GROUP BY {keys} ORDER BY {keys}");
    let mut stmt = c.prepare_cached(&sql)?;
    rows::all(&mut stmt, params_from_iter(params), |row| {
        let run_id = match row.get::<_, Option<String>>(1)? {
            None => None,
            Some(_) => Some(rows::run_id(row, 1)?),
        };
        Ok(Spend { project_id: rows::project_id(row, 0)?, run_id, totals: totals(row, 2)? })
    })
}

pub(crate) fn daily_costs(c: &Connection, req: &CostQuery) -> Result<Vec<DailyCost>, OpError> {
    let (filter, params) = filter(req.since, req.project_id, None);
    let sql = format!(
        "SELECT {DAY} AS day, r.project_id, u.model, {TOTALS} {FROM} {filter}
         GROUP BY day, r.project_id, u.model ORDER BY day, r.project_id, u.model"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    rows::all(&mut stmt, params_from_iter(params), |row| {
        Ok(DailyCost {
            day: day(row, 0)?,
            project_id: rows::project_id(row, 1)?,
            model: row.get(2)?,
            totals: totals(row, 3)?,
        })
    })
}

/// The date `days` after 1970-01-01.
fn day(row: &Row<'_>, idx: usize) -> Result<NaiveDate, OpError> {
    let days: i64 = row.get(idx)?;
    let date = i32::try_from(days)
        .ok()
        .and_then(|d| d.checked_add(719_163)) // days from 0001-01-01 to 1970-01-01
        .and_then(NaiveDate::from_num_days_from_ce_opt);
    Ok(date.ok_or_else(|| Error::corrupt(rows::column(row, idx), format!("day {days} out of range")))?)
}

/// The [`TOTALS`] columns from `base` on.
fn totals(row: &Row<'_>, base: usize) -> Result<UsageTotals, OpError> {
    // The exact sum of column pair `i` (0 for the cost, then the tokens).
    let sum = |i: usize| -> Result<i128, OpError> {
        let hi: Option<i64> = row.get(base + 2 + 2 * i)?;
        let lo: Option<i64> = row.get(base + 3 + 2 * i)?;
        Ok(i128::from(hi.unwrap_or(0)) * (1 << 32) + i128::from(lo.unwrap_or(0)))
    };
    let tokens = |i: usize| -> Result<u64, OpError> {
        let v = sum(i)?;
        if v < 0 {
            let idx = base + 2 + 2 * i;
            return Err(Error::corrupt(rows::column(row, idx), format!("token sum {v} is negative")).into());
        }
        Ok(u64::try_from(v).unwrap_or(u64::MAX))
    };
    let cost = sum(0)?;
    Ok(UsageTotals {
        records: rows::uint(row, base)?,
        unpriced_records: rows::uint(row, base + 1)?,
        cost_micros: i64::try_from(cost).unwrap_or(if cost < 0 { i64::MIN } else { i64::MAX }),
        usage: Usage {
            input: tokens(1)?,
            cache_read: tokens(2)?,
            cache_write: tokens(3)?,
            output: tokens(4)?,
            reasoning: tokens(5)?,
        },
    })
}
