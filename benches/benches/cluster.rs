#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Claim + complete throughput with 1, 4 and 16 concurrent claimers on
//! PostgreSQL and SQLite, and the engine's orchestration overhead per run.
//!
//! ```text
//! cargo bench -p paid-benches --bench cluster
//! ```
//!
//! First criterion measures each configuration (time per run; throughput in
//! runs/s). Then a summary pass measures every configuration once more on
//! a fixed batch and prints the figures as ratios: against the same store
//! with one claimer, and against SQLite with as many claimers, all measured
//! in this run. The overhead section reports p50/p95 of the engine's time per
//! run beyond the agent, with a store round trip as the unit, as ratios to
//! the 20 ms target, to SQLite, and to the same store called once per read
//! and per write (the engine before the combined journal writes). The last
//! section counts and times the store calls of a run.
//!
//! PostgreSQL comes from `PAID_TEST_DATABASE_URL` (or the provisioned test
//! server); each configuration gets a fresh schema.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{BenchmarkId, Criterion, Throughput};
use paid_benches::{Table, claim_complete, orchestration, percentile, round_trips, seed};
use paid_core::store::prelude::*;
use paid_core::{
    AppendLog, AuditEvent, ClaimRequest, CostQuery, DailyCost, LogAppend, LogChunk, ModelDecision, NewRun, Outcome,
    Project, ProjectId, Result, Run, RunFilter, RunId, RunPatch, RunState, Spend, SpendQuery, StepRecord, Store,
    Timestamp, TrackedIssue, Transition, UsageRecord,
};
use paid_store_postgres::{PgStore, testing};
use paid_store_sqlite::SqliteStore;
use tokio::runtime::Runtime;

const CLAIMERS: [usize; 3] = [1, 4, 16];
const BATCH: usize = 3_000;
const OVERHEAD_RUNS: usize = 300;
const PROJECTS: usize = 8;

/// The stores compared.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A SQLite file in WAL mode, one connection per claimer.
    Sqlite,
    /// PostgreSQL, per-project limits on (what `paid-worker` runs).
    Postgres,
    /// PostgreSQL, per-project limits off.
    PostgresNoLimits,
    /// PostgreSQL, limits on, `synchronous_commit` off (writes do not wait
    /// for the WAL flush; see `PgStoreOptions::synchronous_commit`).
    PostgresAsyncCommit,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
            Kind::PostgresNoLimits => "postgres (no limits)",
            Kind::PostgresAsyncCommit => "postgres (async commit)",
        }
    }
}

/// `claimers` handles on one fresh database of `kind`, and what cleans it up.
struct Fixture {
    handles: Vec<Arc<dyn Store>>,
    pg: Option<PgStore>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(kind: Kind, claimers: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            Kind::Sqlite => {
                let path = dir.path().join("bench.db");
                let handles =
                    (0..claimers).map(|_| Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn Store>).collect();
                Self { handles, pg: None, _dir: dir }
            }
            Kind::Postgres | Kind::PostgresNoLimits | Kind::PostgresAsyncCommit => {
                let options = testing::fresh_options()
                    .max_connections(claimers as u32 + 2)
                    .project_limits(!matches!(kind, Kind::PostgresNoLimits))
                    .synchronous_commit(!matches!(kind, Kind::PostgresAsyncCommit));
                let pg = PgStore::connect_with(options).await.unwrap();
                let handles = (0..claimers).map(|_| Arc::new(pg.clone()) as Arc<dyn Store>).collect();
                Self { handles, pg: Some(pg), _dir: dir }
            }
        }
    }

    async fn finish(self) {
        if let Some(pg) = self.pg {
            pg.drop_schema().await.unwrap();
        }
    }
}

fn claims(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("claim_complete");
    group.throughput(Throughput::Elements(1));
    for kind in [Kind::Sqlite, Kind::Postgres] {
        for claimers in CLAIMERS {
            let fixture = rt.block_on(Fixture::new(kind, claimers));
            rt.block_on(seed(&*fixture.handles[0], PROJECTS, 0));
            group.bench_with_input(BenchmarkId::new(kind.name(), claimers), &claimers, |b, _| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        seed(&*fixture.handles[0], PROJECTS, iters as usize).await;
                        claim_complete(fixture.handles.clone(), iters as usize).await
                    })
                });
            });
            rt.block_on(fixture.finish());
        }
    }
    group.finish();
}

/// Whether `kind` is measured: all, or the ones `PAID_BENCH_ONLY` names
/// (comma-separated store names as printed).
fn selected(kind: Kind) -> bool {
    match std::env::var("PAID_BENCH_ONLY") {
        Ok(only) if !only.is_empty() => only.split(',').any(|name| name.trim() == kind.name()),
        _ => true,
    }
}

fn summary(rt: &Runtime) {
    let table = Table::default();
    for kind in [Kind::Sqlite, Kind::Postgres, Kind::PostgresNoLimits, Kind::PostgresAsyncCommit] {
        if !selected(kind) {
            continue;
        }
        for claimers in CLAIMERS {
            let rate = rt.block_on(async {
                let fixture = Fixture::new(kind, claimers).await;
                seed(&*fixture.handles[0], PROJECTS, BATCH).await;
                let took = claim_complete(fixture.handles.clone(), BATCH).await;
                fixture.finish().await;
                BATCH as f64 / took.as_secs_f64()
            });
            table.add(kind.name(), claimers, rate);
        }
    }
    println!("\nclaim + complete, {BATCH} runs per configuration (claim, move to an end state, release):");
    print!("{}", table.render("sqlite"));

    println!(
        "\norchestration overhead per run ({OVERHEAD_RUNS} runs through the whole pipeline, instant agent, no sandbox, no git):"
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>11} {:>11} {:>12}",
        "store",
        "total p50",
        "agent p50",
        "over p50",
        "over p95",
        "round trip",
        "p50 trips",
        "p95 / 20 ms",
        "p95 x sqlite",
        "p50 x 1-call"
    );
    // "one call per write": the same store behind a wrapper that hides its
    // combined journal writes (`resume_or_begin_step`,
    // `finish_step_and_transition`), so the engine falls back to one store
    // call per read and per write, as it did before they existed. The
    // variants take turns, a few runs each, so that they share the machine's
    // load (other processes on a shared machine skew back-to-back passes).
    let variants: Vec<(Kind, bool)> = [
        (Kind::Sqlite, false),
        (Kind::Sqlite, true),
        (Kind::Postgres, false),
        (Kind::Postgres, true),
        (Kind::PostgresAsyncCommit, true),
    ]
    .into_iter()
    .filter(|(kind, _)| selected(*kind))
    .collect();
    const TURN: usize = 10;
    let results = rt.block_on(async {
        let mut fixtures = Vec::new();
        for (kind, combined) in &variants {
            let fixture = Fixture::new(*kind, 1).await;
            let store = fixture.handles[0].clone();
            let engine_store: Arc<dyn Store> =
                if *combined { store.clone() } else { Arc::new(Counted::new(store.clone()).separate()) };
            fixtures.push((fixture, store, engine_store, paid_benches::Orchestration::default()));
        }
        for _ in 0..OVERHEAD_RUNS.div_ceil(TURN) {
            for (fixture, _, engine_store, out) in &mut fixtures {
                let o = orchestration(engine_store.clone(), TURN, fixture._dir.path()).await;
                out.total.extend(o.total);
                out.agent.extend(o.agent);
            }
        }
        let mut results = Vec::new();
        for (fixture, store, _, out) in fixtures {
            // After: it queues a run of its own.
            let trips = round_trips(&*store, 500).await;
            fixture.finish().await;
            results.push((out, percentile(&trips, 50.0)));
        }
        results
    });
    let mut sqlite_p95 = None;
    let mut separate_p50 = None;
    for ((kind, combined), (o, rt_p50)) in variants.into_iter().zip(results) {
        let overhead = o.overhead();
        let (p50, p95) = (percentile(&overhead, 50.0), percentile(&overhead, 95.0));
        if !combined {
            separate_p50 = Some(p50);
        }
        if matches!(kind, Kind::Sqlite) && combined {
            sqlite_p95 = Some(p95);
        }
        let ratio = |a: Duration, b: Option<Duration>| {
            b.map(|b| format!("{:.2}", a.as_secs_f64() / b.as_secs_f64().max(1e-9))).unwrap_or_default()
        };
        let name = if combined { kind.name().to_string() } else { format!("{} (one call per write)", kind.name()) };
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8.0} {:>11.2} {:>11} {:>12}",
            name,
            ms(percentile(&o.total, 50.0)),
            ms(percentile(&o.agent, 50.0)),
            ms(p50),
            ms(p95),
            ms(rt_p50),
            p50.as_secs_f64() / rt_p50.as_secs_f64().max(1e-9),
            p95.as_secs_f64() / 0.020,
            ratio(p95, sqlite_p95),
            if combined && !matches!(kind, Kind::PostgresAsyncCommit) {
                ratio(p50, separate_p50)
            } else {
                String::new()
            },
        );
    }
}

/// A [`Store`] that counts and times every call it passes on, to show
/// where a run's orchestration time goes.
///
/// With [`Counted::separate`], it also hides the store's combined journal
/// writes: they run as the port's default implementations, one store call
/// per read and per write.
struct Counted {
    inner: Arc<dyn Store>,
    calls: Mutex<BTreeMap<&'static str, (u64, Duration)>>,
    combined: bool,
}

impl Counted {
    fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, calls: Mutex::new(BTreeMap::new()), combined: true }
    }

    fn separate(self) -> Self {
        Self { combined: false, ..self }
    }

    async fn timed<T>(&self, name: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        let took = started.elapsed();
        let mut calls = self.calls.lock().unwrap();
        let entry = calls.entry(name).or_default();
        entry.0 += 1;
        entry.1 += took;
        out
    }

    fn take(&self) -> BTreeMap<&'static str, (u64, Duration)> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Catalog for Counted {
    async fn put_project(&self, project: &Project) -> Result<()> {
        self.timed("put_project", self.inner.put_project(project)).await
    }
    async fn project(&self, id: ProjectId) -> Result<Project> {
        self.timed("project", self.inner.project(id)).await
    }
    async fn projects(&self) -> Result<Vec<Project>> {
        self.timed("projects", self.inner.projects()).await
    }
    async fn delete_project(&self, id: ProjectId) -> Result<()> {
        self.timed("delete_project", self.inner.delete_project(id)).await
    }
    async fn put_issue(&self, issue: &TrackedIssue) -> Result<()> {
        self.timed("put_issue", self.inner.put_issue(issue)).await
    }
    async fn issue(&self, project: ProjectId, number: u64) -> Result<TrackedIssue> {
        self.timed("issue", self.inner.issue(project, number)).await
    }
    async fn issues(&self, project: ProjectId) -> Result<Vec<TrackedIssue>> {
        self.timed("issues", self.inner.issues(project)).await
    }
    async fn pin_author(&self, project: ProjectId, login: &str, user_id: u64, at: Timestamp) -> Result<u64> {
        self.timed("pin_author", self.inner.pin_author(project, login, user_id, at)).await
    }
    async fn author_pins(&self, project: ProjectId) -> Result<Vec<paid_core::AuthorPin>> {
        self.timed("author_pins", self.inner.author_pins(project)).await
    }
    async fn record_delivery(&self, key: &str, at: Timestamp, forget_before: Timestamp) -> Result<bool> {
        self.timed("record_delivery", self.inner.record_delivery(key, at, forget_before)).await
    }

    async fn claim_poll(&self, project: ProjectId, owner: &str, until: Timestamp, now: Timestamp) -> Result<bool> {
        self.timed("claim_poll", self.inner.claim_poll(project, owner, until, now)).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Runs for Counted {
    async fn create_run(&self, run: &NewRun) -> Result<Run> {
        self.timed("create_run", self.inner.create_run(run)).await
    }
    async fn run(&self, id: RunId) -> Result<Run> {
        self.timed("run", self.inner.run(id)).await
    }
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        self.timed("runs", self.inner.runs(filter)).await
    }
    async fn transition(&self, t: &Transition) -> Result<Run> {
        self.timed("transition", self.inner.transition(t)).await
    }
    async fn patch_run(&self, id: RunId, owner: &str, patch: &RunPatch, at: Timestamp) -> Result<Run> {
        self.timed("patch_run", self.inner.patch_run(id, owner, patch, at)).await
    }
    async fn request_cancel(&self, id: RunId, at: Timestamp) -> Result<Run> {
        self.timed("request_cancel", self.inner.request_cancel(id, at)).await
    }
    async fn cancel_requested(&self, id: RunId) -> Result<bool> {
        self.timed("cancel_requested", self.inner.cancel_requested(id)).await
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<Option<Run>> {
        self.timed("claim", self.inner.claim(req)).await
    }
    async fn heartbeat(&self, id: RunId, owner: &str, lease: chrono::Duration, now: Timestamp) -> Result<()> {
        self.timed("heartbeat", self.inner.heartbeat(id, owner, lease, now)).await
    }
    async fn release(&self, id: RunId, owner: &str) -> Result<()> {
        self.timed("release", self.inner.release(id, owner)).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Journal for Counted {
    async fn begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        self.timed("begin_step", self.inner.begin_step(id, owner, step, key, at)).await
    }
    async fn finish_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        result: std::result::Result<serde_json::Value, String>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        self.timed("finish_step", self.inner.finish_step(id, owner, step, result, at)).await
    }
    async fn resume_or_begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        if !self.combined {
            if let Some(last) = self.steps(id).await?.pop()
                && last.step == step
                && last.status == paid_core::StepStatus::Done
            {
                return Ok(last);
            }
            return self.begin_step(id, owner, step, key, at).await;
        }
        self.timed("resume_or_begin_step", self.inner.resume_or_begin_step(id, owner, step, key, at)).await
    }
    async fn finish_step_and_transition(
        &self,
        t: &Transition,
        result: std::result::Result<serde_json::Value, String>,
    ) -> Result<Run> {
        if !self.combined {
            self.finish_step(t.run_id, &t.owner, t.from, result, t.at).await?;
            return self.transition(t).await;
        }
        self.timed("finish_step_and_transition", self.inner.finish_step_and_transition(t, result)).await
    }
    async fn steps(&self, id: RunId) -> Result<Vec<StepRecord>> {
        self.timed("steps", self.inner.steps(id)).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl RunLog for Counted {
    async fn append_log(&self, req: &AppendLog<'_>) -> Result<LogAppend> {
        self.timed("append_log", self.inner.append_log(req)).await
    }
    async fn logs(&self, id: RunId, after: u64) -> Result<Vec<LogChunk>> {
        self.timed("logs", self.inner.logs(id, after)).await
    }
    async fn prune_logs(&self, finished_before: Timestamp) -> Result<u64> {
        self.timed("prune_logs", self.inner.prune_logs(finished_before)).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Ledger for Counted {
    async fn record_usage(&self, usage: &UsageRecord) -> Result<()> {
        self.timed("record_usage", self.inner.record_usage(usage)).await
    }
    async fn usage(&self, id: RunId) -> Result<Vec<UsageRecord>> {
        self.timed("usage", self.inner.usage(id)).await
    }
    async fn spend(&self, req: &SpendQuery) -> Result<Vec<Spend>> {
        self.timed("spend", self.inner.spend(req)).await
    }
    async fn daily_costs(&self, req: &CostQuery) -> Result<Vec<DailyCost>> {
        self.timed("daily_costs", self.inner.daily_costs(req)).await
    }
    async fn record_decision(&self, decision: &ModelDecision) -> Result<()> {
        self.timed("record_decision", self.inner.record_decision(decision)).await
    }
    async fn decision(&self, id: RunId) -> Result<Option<ModelDecision>> {
        self.timed("decision", self.inner.decision(id)).await
    }
    async fn record_outcome(&self, outcome: &Outcome) -> Result<()> {
        self.timed("record_outcome", self.inner.record_outcome(outcome)).await
    }
    async fn outcomes(&self, project: ProjectId) -> Result<Vec<Outcome>> {
        self.timed("outcomes", self.inner.outcomes(project)).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Audit for Counted {
    async fn audit(&self, event: &AuditEvent) -> Result<()> {
        self.timed("audit", self.inner.audit(event)).await
    }
    async fn audit_events(&self, project: Option<ProjectId>) -> Result<Vec<AuditEvent>> {
        self.timed("audit_events", self.inner.audit_events(project)).await
    }
}

/// Store calls per run of the engine on each store: how many, and the mean
/// time of each, sorted by the time they take per run.
fn breakdown(rt: &Runtime) {
    const RUNS: usize = 50;
    println!("\nstore calls per run ({RUNS} runs; put_issue and create_run are the benchmark's own setup):");
    for kind in [Kind::Sqlite, Kind::Postgres] {
        if !selected(kind) {
            continue;
        }
        let calls = rt.block_on(async {
            let fixture = Fixture::new(kind, 1).await;
            let counted = Arc::new(Counted::new(fixture.handles[0].clone()));
            // Warm up (connections, statement caches), then count.
            orchestration(counted.clone(), 5, fixture._dir.path()).await;
            counted.take();
            orchestration(counted.clone(), RUNS, fixture._dir.path()).await;
            let calls = counted.take();
            fixture.finish().await;
            calls
        });
        let mut rows: Vec<_> = calls.into_iter().collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.1.1));
        let engine: Vec<_> = rows.iter().filter(|(name, _)| !matches!(*name, "put_issue" | "create_run")).collect();
        let total_calls: u64 = engine.iter().map(|(_, (n, _))| n).sum();
        let total_time: Duration = engine.iter().map(|(_, (_, t))| *t).sum();
        println!(
            "{}: {:.1} engine calls per run, {} per run in the store",
            kind.name(),
            total_calls as f64 / RUNS as f64,
            ms(total_time / RUNS as u32)
        );
        println!("  {:<18} {:>10} {:>12} {:>12}", "call", "per run", "mean", "ms per run");
        for (name, (n, t)) in rows {
            println!(
                "  {:<18} {:>10.1} {:>12} {:>12}",
                name,
                n as f64 / RUNS as f64,
                ms(t / n.max(1) as u32),
                ms(t / RUNS as u32)
            );
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let started = Instant::now();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    claims(&mut c, &rt);
    c.final_summary();
    summary(&rt);
    breakdown(&rt);
    println!("\n(benchmark took {:.0?})", started.elapsed());
}
