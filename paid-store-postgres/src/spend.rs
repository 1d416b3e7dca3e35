//! Sums over usage records ([`Ledger::spend`], [`Ledger::daily_costs`]), each
//! one `GROUP BY` statement over `usage_records` joined to `runs`.
//!
//! `SUM` of a `bigint` is an exact `numeric`; it is read as text and clamped
//! to the field's type in Rust, so the sums saturate rather than fail.
//!
//! [`Ledger::spend`]: paid_core::Ledger::spend
//! [`Ledger::daily_costs`]: paid_core::Ledger::daily_costs

use chrono::NaiveDate;
use paid_core::{CostQuery, DailyCost, ProjectId, RunId, Spend, SpendGroup, SpendQuery, Timestamp, Usage, UsageTotals};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder};

use crate::Error;
use crate::error::OpResult;
use crate::rows::{column, get};

/// The record counts, then each summed column, in the order [`totals`]
/// reads them.
const TOTALS: &str = "COUNT(*), COUNT(*) - COUNT(u.cost_micros), SUM(u.cost_micros)::text, SUM(u.input)::text, \
     SUM(u.cache_read)::text, SUM(u.cache_write)::text, SUM(u.output)::text, SUM(u.reasoning)::text";

const FROM: &str = " FROM usage_records u JOIN runs r ON r.id = u.run_id WHERE TRUE";

/// Appends the given filters to a `WHERE TRUE`.
fn filter(q: &mut QueryBuilder<Postgres>, since: Option<Timestamp>, project: Option<ProjectId>, run: Option<RunId>) {
    if let Some(since) = since {
        q.push(" AND u.at >= ").push_bind(since);
    }
    if let Some(project) = project {
        q.push(" AND r.project_id = ").push_bind(project.0);
    }
    if let Some(run) = run {
        q.push(" AND u.run_id = ").push_bind(run.0);
    }
}

pub(crate) async fn spend(pool: &PgPool, req: &SpendQuery) -> OpResult<Vec<Spend>> {
    let (run, keys) = match req.group {
        SpendGroup::Project => ("NULL::uuid", "r.project_id"),
        SpendGroup::Run => ("u.run_id", "r.project_id, u.run_id"),
    };
    let mut q = QueryBuilder::new("SELECT r.project_id, ");
    q.push(run).push(", ").push(TOTALS).push(FROM);
    filter(&mut q, req.since, req.project_id, req.run_id);
    q.push(" GROUP BY ").push(keys).push(" ORDER BY ").push(keys);
    let all = q.build().fetch_all(pool).await?;
    all.iter()
        .map(|row| {
            Ok(Spend {
                project_id: ProjectId(get(row, 0)?),
                run_id: get::<Option<uuid::Uuid>>(row, 1)?.map(RunId),
                totals: totals(row, 2)?,
            })
        })
        .collect()
}

pub(crate) async fn daily_costs(pool: &PgPool, req: &CostQuery) -> OpResult<Vec<DailyCost>> {
    let mut q = QueryBuilder::new("SELECT (u.at AT TIME ZONE 'UTC')::date AS day, r.project_id, u.model, ");
    q.push(TOTALS).push(FROM);
    filter(&mut q, req.since, req.project_id, None);
    // Models in bytewise order, whatever the database's collation.
    q.push(" GROUP BY day, r.project_id, u.model ORDER BY day, r.project_id, u.model COLLATE \"C\"");
    let all = q.build().fetch_all(pool).await?;
    all.iter()
        .map(|row| {
            Ok(DailyCost {
                day: get::<NaiveDate>(row, 0)?,
                project_id: ProjectId(get(row, 1)?),
                model: get(row, 2)?,
                totals: totals(row, 3)?,
            })
        })
        .collect()
}

/// The [`TOTALS`] columns from `base` on.
fn totals(row: &PgRow, base: usize) -> OpResult<UsageTotals> {
    let count = |idx: usize| -> OpResult<u64> {
        let n: i64 = get(row, idx)?;
        Ok(u64::try_from(n).map_err(|_| Error::corrupt(column(row, idx), format!("{n} is negative")))?)
    };
    // The exact sum in column `idx` (`NULL` when no record had a value). A
    // sum of bigints fits in i128 up to 2^64 records.
    let sum = |idx: usize| -> OpResult<i128> {
        match get::<Option<String>>(row, idx)? {
            None => Ok(0),
            Some(text) => {
                Ok(text.parse().map_err(|e| Error::corrupt(column(row, idx), format!("sum {text:?}: {e}")))?)
            }
        }
    };
    let tokens = |idx: usize| -> OpResult<u64> {
        let v = sum(idx)?;
        if v < 0 {
            return Err(Error::corrupt(column(row, idx), format!("token sum {v} is negative")).into());
        }
        Ok(u64::try_from(v).unwrap_or(u64::MAX))
    };
    let cost = sum(base + 2)?;
    Ok(UsageTotals {
        records: count(base)?,
        unpriced_records: count(base + 1)?,
        cost_micros: i64::try_from(cost).unwrap_or(if cost < 0 { i64::MIN } else { i64::MAX }),
        usage: Usage {
            input: tokens(base + 3)?,
            cache_read: tokens(base + 4)?,
            cache_write: tokens(base + 5)?,
            output: tokens(base + 6)?,
            reasoning: tokens(base + 7)?,
        },
    })
}
