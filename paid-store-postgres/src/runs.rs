//! Runs: queueing, reading, state transitions, patches and cancellation.
//!
//! Every lease-checked write is one statement whose `WHERE` checks the lease
//! owner, its expiry and (for transitions) the state the caller expects, so
//! the check and the write are atomic. When the statement changes nothing, a
//! second read says why, in the order the port documents.

use paid_core::{Failure, NewRun, Run, RunFilter, RunId, RunPatch, RunState, StepStatus, Timestamp, Transition};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, QueryBuilder};

use crate::error::{OpError, OpResult};
use crate::leases::{Holder, lease_lost};
use crate::projects;
use crate::rows::{self, int, json, run_columns};

/// How often a write whose diagnosis found nothing wrong (the run changed
/// between the two statements) is tried again.
const RETRIES: usize = 3;

pub(crate) fn not_found(id: RunId) -> OpError {
    OpError::Refused(paid_core::Error::NotFound { entity: "run", id: id.to_string() })
}

fn first(row: Option<PgRow>) -> OpResult<Option<Run>> {
    row.as_ref().map(rows::run).transpose()
}

pub(crate) async fn get(pool: &PgPool, id: RunId) -> OpResult<Run> {
    let row = sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    first(row)?.ok_or_else(|| not_found(id))
}

/// Fails with `NotFound` unless the run exists.
pub(crate) async fn require(pool: &PgPool, id: RunId) -> OpResult<()> {
    let found = sqlx::query("SELECT 1 FROM runs WHERE id = $1").bind(id.0).fetch_optional(pool).await?;
    found.map(|_| ()).ok_or_else(|| not_found(id))
}

/// Inserts the run unless its id is taken or its issue has an active run of
/// the same kind (`ON CONFLICT DO NOTHING` covers both unique indexes).
pub(crate) async fn create(pool: &PgPool, new: &NewRun) -> OpResult<Run> {
    let kind = rows::kind_str(new.kind);
    let issue = int("issue number", new.issue_number)?;
    let run = Run::from_new(new);
    let inserted = sqlx::query(concat!(
        "INSERT INTO runs (id, project_id, issue_number, kind, state, priority, created_at, updated_at, context)
         SELECT $1, $2, $3, $4, $5, $6, $7, $7, $8::jsonb WHERE EXISTS (SELECT 1 FROM projects WHERE id = $2)
         ON CONFLICT DO NOTHING
         RETURNING ",
        run_columns!()
    ))
    .bind(run.id.0)
    .bind(run.project_id.0)
    .bind(issue)
    .bind(kind)
    .bind(run.state.as_str())
    .bind(run.priority)
    .bind(run.created_at)
    .bind(json("run context", &run.context)?)
    .fetch_optional(pool)
    .await?;
    if let Some(run) = first(inserted)? {
        return Ok(run);
    }
    // Why not: the project is missing, the id is taken, or the issue is busy.
    projects::get(pool, new.project_id).await?;
    if require(pool, new.id).await.is_ok() {
        return Err(OpError::Refused(paid_core::Error::AlreadyExists { entity: "run", id: new.id.to_string() }));
    }
    let active: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE project_id = $1 AND issue_number = $2 AND kind = $3 AND finished_at IS NULL",
    )
    .bind(new.project_id.0)
    .bind(issue)
    .bind(kind)
    .fetch_optional(pool)
    .await?;
    Err(OpError::Refused(paid_core::Error::AlreadyExists {
        entity: "active run",
        id: match active {
            Some(active) => format!("{active} ({kind} of issue #{} in project {})", new.issue_number, new.project_id),
            // It ended between the two statements: a retry would succeed.
            None => format!("{kind} of issue #{} in project {}", new.issue_number, new.project_id),
        },
    }))
}

pub(crate) async fn list(pool: &PgPool, filter: &RunFilter) -> OpResult<Vec<Run>> {
    let mut q = QueryBuilder::new(concat!("SELECT ", run_columns!(), " FROM runs WHERE TRUE"));
    if let Some(project) = filter.project_id {
        q.push(" AND project_id = ").push_bind(project.0);
    }
    if let Some(issue) = filter.issue_number {
        q.push(" AND issue_number = ").push_bind(int("issue number", issue)?);
    }
    if filter.active_only {
        q.push(" AND finished_at IS NULL");
    }
    if let Some(before) = filter.before {
        q.push(" AND (created_at, id) < (SELECT created_at, id FROM runs WHERE id = ").push_bind(before.0).push(")");
    }
    q.push(" ORDER BY created_at DESC, id DESC");
    if let Some(limit) = filter.limit {
        q.push(" LIMIT ").push_bind(i64::from(limit));
    }
    let all = q.build().fetch_all(pool).await?;
    all.iter().map(rows::run).collect()
}

fn illegal(t: &Transition, from: RunState) -> OpError {
    OpError::Refused(paid_core::Error::IllegalTransition {
        run: t.run_id.to_string(),
        from: from.to_string(),
        to: t.to.to_string(),
    })
}

/// Checks in the order the port documents: the run exists, the state
/// machine allows the move, the lease is held (unless the run leaves a
/// parked state, which holds none), the run is in `from`.
pub(crate) async fn transition(pool: &PgPool, t: &Transition) -> OpResult<Run> {
    if !t.from.can_transition_to(t.to) {
        require(pool, t.run_id).await?;
        return Err(illegal(t, t.from));
    }
    for _ in 0..RETRIES {
        let mut conn = pool.acquire().await?;
        if let Some(run) = transition_on(&mut conn, t).await? {
            return Ok(run);
        }
        drop(conn);
        let run = get(pool, t.run_id).await?;
        if !t.from.is_parked() && !Holder::of(&run).holds(&t.owner, t.at) {
            return Err(lease_lost(t.run_id, &t.owner));
        }
        if run.state != t.from {
            return Err(illegal(t, run.state));
        }
    }
    Err(lease_lost(t.run_id, &t.owner))
}

/// The statement of [`transition`] on one connection (or transaction), for
/// a move the state machine allows: `None` when the run is not in `t.from`
/// or the lease is not held. A move out of a parked state needs no lease;
/// a move into or out of one leaves the run unleased.
async fn transition_on(conn: &mut PgConnection, t: &Transition) -> OpResult<Option<Run>> {
    let moved = sqlx::query(concat!(
        "UPDATE runs SET state = $4, updated_at = $5, context = COALESCE($9::jsonb, context),
             branch = COALESCE($10, branch), model = COALESCE($11, model), pr_url = COALESCE($12, pr_url),
             iterations = COALESCE($13, iterations), failure = COALESCE($14::json, failure),
             finished_at = CASE WHEN $6 THEN $5 ELSE finished_at END,
             lease_owner = CASE WHEN $7 THEN NULL ELSE lease_owner END,
             lease_expires_at = CASE WHEN $7 THEN NULL ELSE lease_expires_at END
         WHERE id = $1 AND state = $2 AND ($8 OR (lease_owner = $3 AND lease_expires_at > $5))
         RETURNING ",
        run_columns!()
    ))
    .bind(t.run_id.0)
    .bind(t.from.as_str())
    .bind(&t.owner)
    .bind(t.to.as_str())
    .bind(t.at)
    .bind(t.to.is_terminal())
    .bind(t.to.is_parked() || t.from.is_parked())
    .bind(t.from.is_parked());
    let moved = bind_patch(moved, &t.patch)?.fetch_optional(&mut *conn).await?;
    first(moved)
}

/// Finishes the latest started record of `t.from` and applies `t` in one
/// statement: the run row is locked only if the caller holds the lease and
/// the run is in `t.from`, the step is marked only for that row, and the run
/// moves only if the step was marked, so both happen or neither. When
/// nothing happened, a few reads say why, in the order the port documents.
pub(crate) async fn finish_and_transition(
    pool: &PgPool,
    t: &Transition,
    result: Result<serde_json::Value, String>,
) -> OpResult<Run> {
    let (status, output, error) = match result {
        Ok(output) => (StepStatus::Done, json("step output", &output)?, None),
        Err(error) => (StepStatus::Failed, "null".to_string(), Some(json("step error", &error)?)),
    };
    let legal = t.from.can_transition_to(t.to);
    if legal {
        let moved = sqlx::query(concat!(
            "WITH held AS (
                 SELECT id FROM runs
                 WHERE id = $1 AND state = $2 AND lease_owner = $3 AND lease_expires_at > $5
                 FOR UPDATE
             ),
             target AS (
                 SELECT s.run_id, s.seq FROM steps s, held
                 WHERE s.run_id = held.id AND s.step = $2 AND s.status = $7
                 ORDER BY s.seq DESC LIMIT 1
             ),
             finished AS (
                 UPDATE steps s SET status = $8, output = $9::json, error = $10::json, finished_at = $5
                 FROM target WHERE s.run_id = target.run_id AND s.seq = target.seq
                 RETURNING s.run_id
             )
             UPDATE runs SET state = $4, updated_at = $5, context = COALESCE($12::jsonb, context),
                 branch = COALESCE($13, branch), model = COALESCE($14, model), pr_url = COALESCE($15, pr_url),
                 iterations = COALESCE($16, iterations), failure = COALESCE($17::json, failure),
                 finished_at = CASE WHEN $6 THEN $5 ELSE finished_at END,
                 lease_owner = CASE WHEN $11 THEN NULL ELSE lease_owner END,
                 lease_expires_at = CASE WHEN $11 THEN NULL ELSE lease_expires_at END
             WHERE id = (SELECT run_id FROM finished)
             RETURNING ",
            run_columns!()
        ))
        .bind(t.run_id.0)
        .bind(t.from.as_str())
        .bind(&t.owner)
        .bind(t.to.as_str())
        .bind(t.at)
        .bind(t.to.is_terminal())
        .bind(rows::status_str(StepStatus::Started))
        .bind(rows::status_str(status))
        .bind(output)
        .bind(error)
        // The step's `from` needed the lease (the journal does); parking
        // gives it up.
        .bind(t.to.is_parked());
        let moved = bind_patch(moved, &t.patch)?.fetch_optional(pool).await?;
        if let Some(run) = first(moved)? {
            return Ok(run);
        }
    }
    let run = get(pool, t.run_id).await?;
    if !Holder::of(&run).holds(&t.owner, t.at) {
        return Err(lease_lost(t.run_id, &t.owner));
    }
    let started: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM steps WHERE run_id = $1 AND step = $2 AND status = $3 LIMIT 1")
            .bind(t.run_id.0)
            .bind(t.from.as_str())
            .bind(rows::status_str(StepStatus::Started))
            .fetch_optional(pool)
            .await?;
    if started.is_none() {
        return Err(OpError::Refused(paid_core::Error::NotFound {
            entity: "step",
            id: format!("{} (started) of run {}", t.from, t.run_id),
        }));
    }
    if !legal {
        return Err(illegal(t, t.from));
    }
    if run.state != t.from {
        return Err(illegal(t, run.state));
    }
    // The run changed between the statement and the reads.
    Err(lease_lost(t.run_id, &t.owner))
}

/// Binds `patch`'s fields, in order: context (jsonb), branch, model,
/// PR URL, iterations, failure (json). Each `NULL` keeps the column.
fn bind_patch<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    patch: &'q RunPatch,
) -> OpResult<sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>> {
    let context = patch.context.as_ref().map(|c| json("run context", c)).transpose()?;
    let failure = patch.failure.as_ref().map(|f| json("run failure", f)).transpose()?;
    Ok(query
        .bind(context)
        .bind(&patch.branch)
        .bind(&patch.model)
        .bind(&patch.pr_url)
        .bind(patch.iterations.map(i64::from))
        .bind(failure))
}

pub(crate) async fn patch(pool: &PgPool, id: RunId, owner: &str, patch: &RunPatch, at: Timestamp) -> OpResult<Run> {
    let failure = patch.failure.as_ref().map(|f| json("run failure", f)).transpose()?;
    let context = patch.context.as_ref().map(|c| json("run context", c)).transpose()?;
    for _ in 0..RETRIES {
        let patched = sqlx::query(concat!(
            "UPDATE runs SET branch = COALESCE($3, branch), model = COALESCE($4, model),
                 pr_url = COALESCE($5, pr_url), iterations = COALESCE($6, iterations),
                 failure = COALESCE($7::json, failure), updated_at = $8,
                 context = COALESCE($9::jsonb, context)
             WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > $8
             RETURNING ",
            run_columns!()
        ))
        .bind(id.0)
        .bind(owner)
        .bind(&patch.branch)
        .bind(&patch.model)
        .bind(&patch.pr_url)
        .bind(patch.iterations.map(i64::from))
        .bind(&failure)
        .bind(at)
        .bind(&context)
        .fetch_optional(pool)
        .await?;
        if let Some(run) = first(patched)? {
            return Ok(run);
        }
        let run = get(pool, id).await?;
        if !Holder::of(&run).holds(owner, at) {
            return Err(lease_lost(id, owner));
        }
    }
    Err(lease_lost(id, owner))
}

/// A parked run (no lease, no worker) moves to `cleaning` with a
/// `cancelled` failure, for a worker to clean up after it; a leased run, or
/// one in `cleaning` already, is only flagged; any other unleased (or
/// lease-expired) run ends as `cancelled` at once, its lease cleared; an
/// ended run is left alone.
pub(crate) async fn request_cancel(pool: &PgPool, id: RunId, at: Timestamp) -> OpResult<Run> {
    // The failure's code and message do not depend on the step.
    let failure = Failure::cancelled(RunState::Cleaning);
    // In every `CASE`: parked (`$3`), kept as it is, or ended at once.
    let changed = sqlx::query(concat!(
        "UPDATE runs SET cancel_requested = TRUE,
             state = CASE WHEN state = ANY($3) THEN 'cleaning'
                 WHEN state = 'cleaning' OR (lease_owner IS NOT NULL AND lease_expires_at > $2) THEN state
                 ELSE 'cancelled' END,
             failure = CASE WHEN state = ANY($3)
                 THEN json_build_object('step', state, 'code', $4::text, 'message', $5::text) ELSE failure END,
             updated_at = CASE WHEN state = ANY($3) THEN $2
                 WHEN state = 'cleaning' OR (lease_owner IS NOT NULL AND lease_expires_at > $2) THEN updated_at
                 ELSE $2 END,
             finished_at = CASE WHEN state = ANY($3) THEN finished_at
                 WHEN state = 'cleaning' OR (lease_owner IS NOT NULL AND lease_expires_at > $2) THEN finished_at
                 ELSE $2 END,
             lease_expires_at = CASE WHEN state = ANY($3) THEN NULL
                 WHEN state = 'cleaning' OR (lease_owner IS NOT NULL AND lease_expires_at > $2) THEN lease_expires_at
                 ELSE NULL END,
             lease_owner = CASE WHEN state = ANY($3) THEN NULL
                 WHEN state = 'cleaning' OR (lease_owner IS NOT NULL AND lease_expires_at > $2) THEN lease_owner
                 ELSE NULL END
         WHERE id = $1 AND finished_at IS NULL
         RETURNING ",
        run_columns!()
    ))
    .bind(id.0)
    .bind(at)
    .bind(crate::leases::parked_states())
    .bind(&failure.code)
    .bind(&failure.message)
    .fetch_optional(pool)
    .await?;
    match first(changed)? {
        Some(run) => Ok(run),
        // Missing (NotFound) or already ended (returned as it is).
        None => get(pool, id).await,
    }
}

pub(crate) async fn cancel_requested(pool: &PgPool, id: RunId) -> OpResult<bool> {
    let flag: Option<bool> =
        sqlx::query_scalar("SELECT cancel_requested FROM runs WHERE id = $1").bind(id.0).fetch_optional(pool).await?;
    flag.ok_or_else(|| not_found(id))
}
