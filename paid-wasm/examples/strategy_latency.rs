//! Per-decision latency of a WASM strategy call against the same strategy in
//! native Rust, measured in one run.
//!
//! ```text
//! scripts/build-strategies
//! cargo run --release -p paid-wasm --example strategy_latency [-- CALLS]
//! ```
//!
//! Each decision is timed on its own (`Instant` around one call) after a
//! warm-up; the table gives p50, p99 and mean per call, and the WASM/native
//! ratio of the medians. A WASM call includes everything the host does per
//! decision: JSON encoding, a fresh `Store` and instance from the
//! pre-linked module, the guest's work under fuel and epoch checks, and
//! decoding the answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use paid_core::learning::experiment::{BayesianRule, PromotionRule};
use paid_core::learning::strategy::{
    ArmStats, ChooseRequest, Comparison, EvolutionStrategy, Posterior, PromoteRequest, ThompsonStrategy,
};
use paid_wasm::{Limits, WasmHost, WasmStrategy};

fn arm(name: &str, control: bool, samples: u64, successes: u64) -> ArmStats {
    ArmStats {
        arm: name.into(),
        control,
        samples,
        successes,
        mean_score: successes as f64 / samples.max(1) as f64,
        score_variance: 0.24,
        posterior: Posterior::Beta { alpha: 1.0 + successes as f64, beta: 1.0 + (samples - successes) as f64 },
    }
}

fn choose(seed: u64) -> ChooseRequest {
    ChooseRequest {
        experiment_id: "0190a0b0-0000-7000-8000-000000000001".into(),
        issue_key: format!("0190a0b0-0000-7000-8000-000000000002#{seed}"),
        seed,
        min_samples_per_arm: 30,
        top_two: 0.5,
        arms: vec![arm("control", true, 120, 50), arm("v2", false, 115, 61), arm("v3", false, 60, 27)],
    }
}

fn promote() -> PromoteRequest {
    let comparison = |arm: &str, p: f64| Comparison {
        arm: arm.into(),
        samples: 115,
        control_samples: 120,
        prob_beats_control: p,
        prob_control_beats: 1.0 - p,
        expected_loss: 0.004,
        welch: None,
    };
    PromoteRequest {
        experiment_id: "0190a0b0-0000-7000-8000-000000000001".into(),
        control: "control".into(),
        arms: choose(0).arms,
        comparisons: vec![comparison("v2", 0.91), comparison("v3", 0.3)],
        rule: PromotionRule::Bayesian(BayesianRule::default()),
        total_samples: 295,
        max_samples: 1000,
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn measure(calls: usize, mut f: impl FnMut(u64)) -> Stats {
    for i in 0..calls / 10 {
        f(i as u64);
    }
    let mut times: Vec<Duration> = (0..calls)
        .map(|i| {
            let start = Instant::now();
            f(i as u64);
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    let mean = times.iter().sum::<Duration>() / calls as u32;
    Stats { p50: times[calls / 2], p99: times[calls * 99 / 100], mean }
}

fn row(what: &str, s: &Stats) {
    println!("{what:<32} {:>10.2?} {:>10.2?} {:>10.2?}", s.p50, s.p99, s.mean);
}

fn main() {
    let calls: usize = std::env::args().nth(1).map_or(20_000, |n| n.parse().expect("CALLS is a number"));
    let path = std::env::var_os("PAID_STRATEGIES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/strategies"))
        .join("thompson.wasm");
    let host = WasmHost::new(Limits::default()).expect("wasmtime engine");
    let module =
        host.load_file(&path).unwrap_or_else(|e| panic!("{e}; build the guests with scripts/build-strategies"));
    let wasm = WasmStrategy::new(module, serde_json::json!({}));
    let native = ThompsonStrategy;

    // Same inputs, same answers.
    for seed in 0..100 {
        assert_eq!(wasm.choose_variant(&choose(seed)).unwrap(), native.choose_variant(&choose(seed)).unwrap());
    }
    let reqs: Vec<ChooseRequest> = (0..1024).map(choose).collect();
    let prom = promote();

    println!("{calls} calls each, thompson strategy, 3 arms");
    println!("{:<32} {:>10} {:>10} {:>10}", "decision", "p50", "p99", "mean");
    let n_choose = measure(calls, |i| {
        std::hint::black_box(native.choose_variant(&reqs[i as usize % reqs.len()]).unwrap());
    });
    row("choose_variant native", &n_choose);
    let w_choose = measure(calls, |i| {
        std::hint::black_box(wasm.choose_variant(&reqs[i as usize % reqs.len()]).unwrap());
    });
    row("choose_variant wasm", &w_choose);
    let n_prom = measure(calls, |_| {
        std::hint::black_box(native.should_promote(&prom).unwrap());
    });
    row("should_promote native", &n_prom);
    let w_prom = measure(calls, |_| {
        std::hint::black_box(wasm.should_promote(&prom).unwrap());
    });
    row("should_promote wasm", &w_prom);
    // The fixed cost of a call: a module that answers at once with a
    // constant, through the same host path (encode, fresh instance, decode).
    let answer = r#"{"ok":{"arm":"control","reason":"constant"}}"#;
    let constant = wat::parse_str(format!(
        r#"(module (memory (export "memory") 1)
          (data (i32.const 1024) "{}")
          (func (export "abi_version") (result i32) i32.const 1)
          (func (export "alloc") (param i32) (result i32) i32.const 4096)
          (func (export "decide") (param i32 i32) (result i64)
            i64.const {}))"#,
        answer.replace('"', "\\\""),
        (1024u64 << 32) | answer.len() as u64
    ))
    .expect("constant module");
    let floor = WasmStrategy::new(host.load("constant", &constant).expect("constant module"), serde_json::json!({}));
    let w_floor = measure(calls, |i| {
        std::hint::black_box(floor.choose_variant(&reqs[i as usize % reqs.len()]).unwrap());
    });
    row("choose_variant wasm, no-op guest", &w_floor);
    let ratio = |w: &Stats, n: &Stats| w.p50.as_secs_f64() / n.p50.as_secs_f64().max(1e-12);
    println!(
        "wasm / native at p50: choose_variant {:.1}x, should_promote {:.1}x",
        ratio(&w_choose, &n_choose),
        ratio(&w_prom, &n_prom)
    );
}
