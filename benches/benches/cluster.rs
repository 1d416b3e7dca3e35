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
//! run beyond the agent, with a store round trip as the unit.
//!
//! PostgreSQL comes from `PAID_TEST_DATABASE_URL` (or the provisioned test
//! server); each configuration gets a fresh schema.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use paid_benches::{Table, claim_complete, orchestration, percentile, round_trips, seed};
use paid_core::Store;
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
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>12} {:>16} {:>14}",
        "store", "total p50", "agent p50", "over p50", "over p95", "round trip", "p50 round trips", "p95 / 20 ms"
    );
    for kind in [Kind::Sqlite, Kind::Postgres, Kind::PostgresAsyncCommit] {
        if !selected(kind) {
            continue;
        }
        let (o, rt_p50) = rt.block_on(async {
            let fixture = Fixture::new(kind, 1).await;
            let store = fixture.handles[0].clone();
            let o = orchestration(store.clone(), OVERHEAD_RUNS, fixture._dir.path()).await;
            // After: it queues a run of its own.
            let trips = round_trips(&*store, 500).await;
            fixture.finish().await;
            (o, percentile(&trips, 50.0))
        });
        let overhead = o.overhead();
        let (p50, p95) = (percentile(&overhead, 50.0), percentile(&overhead, 95.0));
        println!(
            "{:<24} {:>10} {:>10} {:>10} {:>10} {:>12} {:>16.0} {:>14.2}",
            kind.name(),
            ms(percentile(&o.total, 50.0)),
            ms(percentile(&o.agent, 50.0)),
            ms(p50),
            ms(p95),
            ms(rt_p50),
            p50.as_secs_f64() / rt_p50.as_secs_f64().max(1e-9),
            p95.as_secs_f64() / 0.020
        );
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
    println!("\n(benchmark took {:.0?})", started.elapsed());
}
