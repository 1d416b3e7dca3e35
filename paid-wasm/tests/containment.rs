//! Bad modules are rejected or contained with an error naming them, and the
//! caller keeps working through the fallback strategy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use paid_core::learning::strategy::{EvolutionStrategy, FallbackStrategy, ThompsonStrategy};
use paid_wasm::{Error, Limits, WasmHost, WasmStrategy};
use pretty_assertions::assert_eq;
use support::{choose_request, guest, promote_request};

/// A module with the ABI's exports whose `decide` body is `body` (and whose
/// other functions are well-behaved).
fn abi_module(decide_body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (memory (export "memory") 1)
          (global $next (mut i32) (i32.const 1024))
          (func (export "abi_version") (result i32) i32.const 1)
          (func (export "alloc") (param $len i32) (result i32) (local $p i32)
            global.get $next local.set $p
            global.get $next local.get $len i32.add global.set $next
            local.get $p)
          (func (export "decide") (param $ptr i32) (param $len i32) (result i64) {decide_body}))"#
    ))
    .unwrap()
}

fn limits() -> Limits {
    Limits { fuel: 5_000_000, deadline: Duration::from_secs(5), memory_bytes: 4 << 20, ..Limits::default() }
}

fn call(host: &WasmHost, name: &str, wasm: &[u8]) -> Error {
    let module = host.load(name, wasm).unwrap();
    let strategy = WasmStrategy::new(module, serde_json::json!({}));
    strategy.call::<_, serde_json::Value>("choose_variant", &choose_request(1)).unwrap_err()
}

fn assert_names(err: &Error, module: &str) {
    assert_eq!(err.module(), Some(module));
    assert!(err.to_string().contains(&format!("strategy module {module} ")), "{err}");
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let host = WasmHost::new(limits()).unwrap();
    let err = call(&host, "spin", &abi_module("(loop $l (br $l)) unreachable"));
    assert!(matches!(err, Error::OutOfFuel { fuel: 5_000_000, .. }), "{err:?}");
    assert_names(&err, "spin");
    assert!(err.to_string().contains("ran out of fuel"), "{err}");
}

#[test]
fn the_epoch_deadline_stops_what_fuel_does_not() {
    let host = WasmHost::new(Limits { fuel: u64::MAX / 2, deadline: Duration::from_millis(100), ..limits() }).unwrap();
    let started = Instant::now();
    let err = call(&host, "spin-forever", &abi_module("(loop $l (br $l)) unreachable"));
    assert!(matches!(err, Error::Deadline { .. }), "{err:?}");
    assert_names(&err, "spin-forever");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let host = WasmHost::new(limits()).unwrap();
    // Grow one page at a time, forever.
    let err = call(&host, "hog", &abi_module("(loop $l (drop (memory.grow (i32.const 1))) (br $l)) unreachable"));
    assert!(matches!(err, Error::MemoryExceeded { limit_bytes, .. } if limit_bytes == 4 << 20), "{err:?}");
    assert_names(&err, "hog");
    // A module that asks for too much memory up front fails to instantiate,
    // which the load-time ABI check catches.
    let big = wat::parse_str(
        r#"(module (memory (export "memory") 1000)
            (func (export "abi_version") (result i32) i32.const 1)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "decide") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    let err = host.load("greedy", &big).unwrap_err();
    assert!(matches!(err, Error::MemoryExceeded { .. }), "{err:?}");
    assert_names(&err, "greedy");
}

#[test]
fn traps_are_contained() {
    let host = WasmHost::new(limits()).unwrap();
    let err = call(&host, "crash", &abi_module("unreachable"));
    assert!(matches!(err, Error::Trap { .. }), "{err:?}");
    assert_names(&err, "crash");
    let err = call(&host, "deep", &abi_module("(call 2 (local.get $ptr) (local.get $len))"));
    assert!(matches!(err, Error::Trap { .. }), "stack overflow: {err:?}");
}

#[test]
fn bad_answers_are_rejected() {
    let host = WasmHost::new(limits()).unwrap();
    // A pointer far outside memory.
    let err = call(&host, "wild", &abi_module("i64.const 0x7fff000000000010"));
    assert!(matches!(err, Error::BadOutput { .. }), "{err:?}");
    assert_names(&err, "wild");
    // The request echoed back: JSON, but no "ok" / "error".
    let echo = "local.get $ptr i64.extend_i32_u i64.const 32 i64.shl local.get $len i64.extend_i32_u i64.or";
    let err = call(&host, "echo", &abi_module(echo));
    assert!(matches!(err, Error::BadOutput { .. }), "{err:?}");
    // Zero bytes: not JSON.
    let err = call(&host, "mute", &abi_module("i64.const 0"));
    assert!(matches!(err, Error::BadOutput { .. }), "{err:?}");
}

#[test]
fn guest_errors_are_reported() {
    let host = WasmHost::new(limits()).unwrap();
    let module = host.load_file(guest("thompson")).unwrap();
    let strategy = WasmStrategy::new(module, serde_json::json!({}));
    let err = strategy.call::<_, serde_json::Value>("explode", &serde_json::json!({})).unwrap_err();
    assert!(matches!(err, Error::Guest { .. }), "{err:?}");
    assert!(err.to_string().contains("strategy module thompson refused explode: unknown call"), "{err}");
    // A well-formed call with an input of the wrong shape.
    let err = strategy.call::<_, serde_json::Value>("choose_variant", &serde_json::json!({"arms": 3})).unwrap_err();
    assert!(err.to_string().contains("bad input"), "{err}");
}

#[test]
fn malformed_files_are_rejected_at_load() {
    let host = WasmHost::new(limits()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "this is a text file, not a module").unwrap();
    let err = host.load_file(&text).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert_names(&err, "notes");
    assert!(err.to_string().contains("no WebAssembly magic number"), "{err}");

    let truncated = [&b"\0asm\x01\0\0\0"[..], &[0x01, 0xff, 0xff]].concat();
    let err = host.load("truncated", &truncated).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert_names(&err, "truncated");

    let err = host.load_file(dir.path().join("missing.wasm")).unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.wasm"), "{err}");
}

#[test]
fn wrong_interfaces_are_rejected_at_load() {
    let host = WasmHost::new(limits()).unwrap();
    let cases = [
        (
            "no-decide",
            r#"(module (memory (export "memory") 1)
            (func (export "abi_version") (result i32) i32.const 1)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "run") (param i32 i32) (result i64) i64.const 0))"#,
            "no exported function `decide`",
        ),
        (
            "no-memory",
            r#"(module (memory 1)
            (func (export "abi_version") (result i32) i32.const 1)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "decide") (param i32 i32) (result i64) i64.const 0))"#,
            "no exported `memory`",
        ),
        (
            "bad-signature",
            r#"(module (memory (export "memory") 1)
            (func (export "abi_version") (result i32) i32.const 1)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "decide") (param i32) (result i32) i32.const 0))"#,
            "`decide` has type",
        ),
        (
            "wasi",
            r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1))"#,
            "imports wasi_snapshot_preview1::fd_write",
        ),
    ];
    for (name, wat, message) in cases {
        let err = host.load(name, &wat::parse_str(wat).unwrap()).unwrap_err();
        assert!(matches!(err, Error::WrongInterface { .. }), "{name}: {err:?}");
        assert_names(&err, name);
        assert!(err.to_string().contains(message), "{name}: {err}");
    }
    let v2 = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "abi_version") (result i32) i32.const 2)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "decide") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    let err = host.load("future", &v2).unwrap_err();
    assert!(matches!(err, Error::AbiVersion { found: 2, expected: 1, .. }), "{err:?}");
}

/// Every loadable bad module, wrapped in the fallback: the caller gets the
/// built-in strategy's answers, and a good module on the same host still
/// works afterwards.
#[test]
fn the_fallback_keeps_the_caller_working() {
    let host = WasmHost::new(Limits { fuel: 2_000_000, deadline: Duration::from_millis(200), ..limits() }).unwrap();
    let bad = [
        ("spin", abi_module("(loop $l (br $l)) unreachable")),
        ("hog", abi_module("(loop $l (drop (memory.grow (i32.const 1))) (br $l)) unreachable")),
        ("crash", abi_module("unreachable")),
        ("wild", abi_module("i64.const 0x7fff000000000010")),
    ];
    for (name, wasm) in bad {
        let wasm = WasmStrategy::new(host.load(name, &wasm).unwrap(), serde_json::json!({}));
        let strategy = wasm.with_fallback();
        for i in 0..5 {
            let req = choose_request(i);
            assert_eq!(strategy.choose_variant(&req).unwrap(), ThompsonStrategy.choose_variant(&req).unwrap());
            let req = promote_request(i);
            assert_eq!(strategy.should_promote(&req).unwrap(), ThompsonStrategy.should_promote(&req).unwrap());
        }
        assert_eq!(strategy.fallbacks(), 10, "{name}");
    }
    // A guest that answers with an arm that does not exist is overruled too.
    let liar = abi_module(&lie());
    let strategy = FallbackStrategy::with_thompson(Arc::new(WasmStrategy::new(
        host.load("liar", &liar).unwrap(),
        serde_json::json!({}),
    )));
    let req = choose_request(3);
    assert_eq!(strategy.choose_variant(&req).unwrap(), ThompsonStrategy.choose_variant(&req).unwrap());
    assert_eq!(strategy.fallbacks(), 1);

    // Modules that fail to load leave the caller with the built-in strategy.
    let fallback = host.strategy_or_builtin(std::path::Path::new("/nonexistent/strategy.wasm"), serde_json::json!({}));
    assert_eq!(fallback.name(), "thompson");
    // And the host still runs good modules.
    let good = host.strategy_or_builtin(guest("thompson"), serde_json::json!({}));
    assert_eq!(good.name(), "thompson (fallback thompson)");
    let req = choose_request(9);
    assert_eq!(good.choose_variant(&req).unwrap(), ThompsonStrategy.choose_variant(&req).unwrap());
}

/// A `decide` answering `{"ok":{"arm":"nope","reason":"lie"}}` from a data
/// segment.
fn lie() -> String {
    let answer = r#"{"ok":{"arm":"nope","reason":"lie"}}"#;
    // The answer is written by a data segment the test module cannot have
    // (abi_module has none), so store it byte by byte at offset 64.
    let mut body = String::new();
    for (i, b) in answer.bytes().enumerate() {
        body.push_str(&format!("(i32.store8 (i32.const {}) (i32.const {b})) ", 64 + i));
    }
    body.push_str(&format!("i64.const {}", (64u64 << 32) | answer.len() as u64));
    body
}

#[test]
fn more_concurrent_calls_than_slots_are_refused_not_queued() {
    let host = WasmHost::new(Limits {
        max_concurrent_calls: 1,
        fuel: u64::MAX / 2,
        deadline: Duration::from_secs(2),
        ..limits()
    })
    .unwrap();
    // One slot: the load-time ABI check used it and gave it back.
    let slow = Arc::new(WasmStrategy::new(
        host.load("slow", &abi_module("(loop $l (br $l)) unreachable")).unwrap(),
        serde_json::json!({}),
    ));
    // Two calls start together; each would hold the slot until its 2 s
    // deadline, so whichever comes second finds it taken and is refused.
    let together = Arc::new(std::sync::Barrier::new(2));
    let calls: Vec<_> = (0..2)
        .map(|i| {
            let (slow, together) = (slow.clone(), together.clone());
            std::thread::spawn(move || {
                together.wait();
                slow.call::<_, serde_json::Value>("choose_variant", &choose_request(i))
            })
        })
        .collect();
    let (busy, ran): (Vec<_>, Vec<_>) =
        calls.into_iter().map(|c| c.join().unwrap()).partition(|r| matches!(r, Err(Error::Busy { .. })));
    assert_eq!((busy.len(), ran.len()), (1, 1), "busy: {busy:?}, ran: {ran:?}");
    let err = busy.into_iter().next().unwrap().unwrap_err();
    assert!(matches!(err, Error::Busy { limit: 1, .. }), "{err:?}");
    assert_names(&err, "slow");
    assert!(matches!(ran[0], Err(Error::OutOfFuel { .. } | Error::Deadline { .. })), "{ran:?}");
}
