//! The guest strategies in `strategies/` decide exactly as their native
//! twins in paid-core, on the same requests; modules are compiled once and
//! reused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use paid_core::learning::strategy::{
    EvolutionStrategy, MutationCandidate, MutationContext, MutationReview, PromoteAfterNStrategy, ThompsonStrategy,
    Verdict,
};
use paid_wasm::{Limits, WasmHost, WasmStrategy};
use pretty_assertions::assert_eq;
use support::{choose_request, guest, promote_request};

fn host() -> WasmHost {
    WasmHost::new(Limits::default()).unwrap()
}

fn thompson(host: &WasmHost) -> WasmStrategy {
    WasmStrategy::new(host.load_file(guest("thompson")).unwrap(), serde_json::json!({}))
}

fn promote_after_n(host: &WasmHost, native: PromoteAfterNStrategy) -> WasmStrategy {
    WasmStrategy::new(
        host.load_file(guest("promote-after-n")).unwrap(),
        serde_json::json!({"wins": native.wins, "epsilon": native.epsilon}),
    )
}

#[test]
fn thompson_guest_chooses_as_native() {
    let wasm = thompson(&host());
    let mut challengers = 0;
    for i in 0..400 {
        let req = choose_request(i);
        let native = ThompsonStrategy.choose_variant(&req).unwrap();
        assert_eq!(wasm.choose_variant(&req).unwrap(), native, "request {i}: {req:?}");
        challengers += usize::from(native.reason.starts_with("top-two"));
    }
    assert!(challengers > 20, "the challenger path ran only {challengers} times");
}

#[test]
fn thompson_guest_promotes_as_native() {
    let wasm = thompson(&host());
    let mut kinds = [0usize; 3];
    for i in 0..300 {
        let req = promote_request(i);
        let native = ThompsonStrategy.should_promote(&req).unwrap();
        kinds[match native {
            Verdict::Continue { .. } => 0,
            Verdict::Promote { .. } => 1,
            Verdict::KeepControl { .. } => 2,
        }] += 1;
        assert_eq!(wasm.should_promote(&req).unwrap(), native, "request {i}: {req:?}");
    }
    assert!(kinds.iter().all(|k| *k > 5), "every verdict kind is exercised: {kinds:?}");
}

#[test]
fn promote_after_n_guest_decides_as_native() {
    let host = host();
    for native in [PromoteAfterNStrategy::default(), PromoteAfterNStrategy { wins: 3, epsilon: 0.4 }] {
        let wasm = promote_after_n(&host, native);
        for i in 0..300 {
            let req = choose_request(i);
            assert_eq!(wasm.choose_variant(&req).unwrap(), native.choose_variant(&req).unwrap(), "request {i}");
            let req = promote_request(i);
            assert_eq!(wasm.should_promote(&req).unwrap(), native.should_promote(&req).unwrap(), "request {i}");
        }
    }
}

#[test]
fn mutation_hooks_match_the_defaults() {
    let host = host();
    let ctx = MutationContext {
        prompt_slug: "task".into(),
        version: 4,
        scored_runs: 37,
        mean_quality: 0.61,
        max_mutations: 3,
        sample_low: 5,
        sample_high: 4,
    };
    let review = MutationReview {
        prompt_slug: "task".into(),
        parent_template: "{{ issue.title }}".into(),
        max_mutations: 2,
        candidates: (0..4)
            .map(|i| MutationCandidate {
                index: i * 2,
                template: format!("v{i} {{{{ issue.title }}}}"),
                reasoning: "why".into(),
                expected_improvement: "+3%".into(),
            })
            .collect(),
    };
    let strategies: [(&dyn EvolutionStrategy, WasmStrategy); 2] = [
        (&ThompsonStrategy, thompson(&host)),
        (&PromoteAfterNStrategy::default(), promote_after_n(&host, PromoteAfterNStrategy::default())),
    ];
    for (native, wasm) in strategies {
        assert_eq!(wasm.propose_mutations(&ctx).unwrap(), native.propose_mutations(&ctx).unwrap());
        assert_eq!(wasm.review_mutations(&review).unwrap(), native.review_mutations(&review).unwrap());
    }
}

#[test]
fn modules_are_compiled_once_and_reused() {
    let host = host();
    let strategy = Arc::new(thompson(&host));
    assert_eq!(host.modules_compiled(), 1);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let strategy = strategy.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    let req = choose_request(t * 1000 + i);
                    assert_eq!(strategy.choose_variant(&req).unwrap(), ThompsonStrategy.choose_variant(&req).unwrap());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(strategy.module().calls(), 1000);
    assert_eq!(host.modules_compiled(), 1, "1000 calls, one compilation");
}
