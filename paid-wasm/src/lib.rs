//! WASM-hosted evolution strategies for Paid.
//!
//! A plugin author writes the decisions of the learning loop (which arm an
//! issue gets, whether a variant has won, how to ask for and which prompt
//! mutations to keep) as a WebAssembly module; Paid runs it on wasmtime with
//! no imports at all (no WASI: no files, clock or network), a fuel budget
//! per call, a wall-clock deadline through epoch interruption, and a memory
//! cap. A module that traps, loops, allocates without bound, is malformed or
//! has the wrong interface fails with an [`Error`] naming it; wrapped in a
//! [`FallbackStrategy`], the built-in strategy answers instead and the run
//! goes on.
//!
//! ```
//! use paid_core::learning::strategy::{ArmStats, ChooseRequest, EvolutionStrategy, Posterior};
//! use paid_wasm::{Limits, WasmHost, WasmStrategy};
//!
//! // A module that always picks control, written in WAT for the example;
//! // real strategies are Rust crates built for wasm32 (see `strategies/`).
//! let wasm = wat::parse_str(r#"(module
//!   (memory (export "memory") 1)
//!   (data (i32.const 1024) "{\"ok\":{\"arm\":\"control\",\"reason\":\"always control\"}}")
//!   (func (export "abi_version") (result i32) i32.const 1)
//!   (func (export "alloc") (param i32) (result i32) i32.const 4096)
//!   (func (export "decide") (param i32 i32) (result i64)
//!     i64.const 1024 i64.const 32 i64.shl i64.const 50 i64.or))"#)?;
//!
//! let host = WasmHost::new(Limits::default())?;
//! let strategy = WasmStrategy::new(host.load("always-control", &wasm)?, serde_json::json!({}));
//! let arm = |name: &str, control| ArmStats {
//!     arm: name.into(), control, samples: 0, successes: 0, mean_score: 0.0, score_variance: 0.0,
//!     posterior: Posterior::Beta { alpha: 1.0, beta: 1.0 },
//! };
//! let req = ChooseRequest {
//!     experiment_id: "e".into(), issue_key: "p#1".into(), seed: 7, min_samples_per_arm: 0, top_two: 1.0,
//!     arms: vec![arm("control", true), arm("v2", false)],
//! };
//! assert_eq!(strategy.choose_variant(&req)?.arm, "control");
//!
//! // Garbage is rejected at load time, with the module's name.
//! let err = host.load("junk", b"not wasm").unwrap_err();
//! assert!(err.to_string().contains("strategy module junk is not a valid WebAssembly module"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The ABI (version 1)
//!
//! A core WebAssembly module (not a component) that **imports nothing** and
//! exports:
//!
//! | export | type | meaning |
//! | --- | --- | --- |
//! | `memory` | 32-bit memory | where requests and answers live |
//! | `abi_version` | `() -> i32` | returns `1` |
//! | `alloc` | `(len: i32) -> i32` | a pointer to `len` writable bytes |
//! | `decide` | `(ptr: i32, len: i32) -> i64` | handles the request at `ptr..ptr+len`; returns the answer's `(ptr << 32) \| len` |
//!
//! Each call gets a fresh instance: the host calls `alloc`, writes the
//! request, calls `decide`, reads the answer, and drops the instance, so a
//! guest never needs to free memory and keeps no state between calls.
//!
//! The request is UTF-8 JSON: `{"call": C, "params": P, "input": I}`, where
//! `C` is `choose_variant`, `should_promote`, `propose_mutations` or
//! `review_mutations`, `P` is the strategy's configuration as given to
//! [`WasmStrategy::new`], and `I` the request type of that call in
//! [`paid_core::learning::strategy`] (`ChooseRequest`, `PromoteRequest`,
//! `MutationContext`, `MutationReview`). The answer is UTF-8 JSON, either
//! `{"ok": A}` with `A` the call's answer type (`Choice`, `Verdict`,
//! `MutationPlan`, `MutationSelection`), or `{"error": "message"}`.
//! Randomness comes from the request's `seed`; the sampler of
//! [`paid_core::learning::sampler`] is reproducible bit for bit in a guest.
//!
//! # Limits
//!
//! [`Limits`]: fuel per call (default 20 M units), a deadline per call
//! (default 500 ms, checked on epoch ticks of 5 ms by a background thread),
//! memory (default 16 MiB, growth past it traps), the size of an answer
//! (1 MiB) and the WebAssembly stack (512 KiB).

mod error;
mod host;
mod strategy;

pub use error::Error;
pub use host::{Limits, StrategyModule, WasmHost};
pub use paid_core::learning::strategy::FallbackStrategy;
pub use strategy::WasmStrategy;

/// The version of the ABI this host speaks.
pub const ABI_VERSION: i32 = 1;
