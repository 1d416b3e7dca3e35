//! The price registry: the shipped file parses, prices follow their
//! effective dates, operators override and extend, unknown models cost
//! `None`, and bad files are refused with a message naming the problem.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use paid_core::Usage;
use paid_llm::prices::PriceRegistry;

const MTOK: Usage =
    Usage { input: 1_000_000, cache_read: 1_000_000, cache_write: 1_000_000, output: 1_000_000, reasoning: 1_000_000 };

#[test]
fn the_shipped_registry_prices_every_bucket() {
    let reg = PriceRegistry::builtin().unwrap();
    assert_eq!(reg.versions(), ["2025-12-01"]);
    let now = Utc::now();
    let info = reg.model("anthropic", "claude-sonnet-4-5").unwrap();
    assert_eq!(info.context_window, Some(200_000));
    assert_eq!(info.max_output, Some(64_000));
    assert!(info.capabilities.tools && info.capabilities.prompt_cache);
    // $3 + $0.30 + $3.75 + $15 + $15 (reasoning at the output rate).
    assert_eq!(reg.cost_micros("anthropic", "claude-sonnet-4-5", &MTOK, now), Some(37_050_000));
    // A dated snapshot name resolves to its model.
    assert_eq!(reg.cost_micros("anthropic", "claude-sonnet-4-5-20250929", &MTOK, now), Some(37_050_000));
    // OpenAI: no cache-write charge is modeled separately; it defaults to the input rate.
    assert_eq!(
        reg.cost_micros(
            "openai",
            "gpt-5-mini",
            &Usage { input: 1_000_000, cache_read: 1_000_000, ..Usage::default() },
            now
        ),
        Some(275_000)
    );
    for m in reg.models() {
        assert!(m.context_window.is_some() && m.max_output.is_some() && m.rank > 0, "{}/{}", m.provider, m.model);
    }
}

#[test]
fn unknown_models_cost_none_never_zero() {
    let reg = PriceRegistry::builtin().unwrap();
    let now = Utc::now();
    assert_eq!(reg.cost_micros("openai", "gpt-9-ultra", &MTOK, now), None);
    assert_eq!(reg.cost_micros("mystery", "claude-sonnet-4-5", &MTOK, now), None);
    // Known model, but before its first price.
    let before = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(reg.cost_micros("openai", "gpt-5", &MTOK, before), None);
}

#[test]
fn prices_change_on_their_effective_date() {
    let reg = PriceRegistry::builtin().unwrap();
    let usage = Usage { input: 1_000_000, ..Usage::default() };
    let day_before = Utc.with_ymd_and_hms(2025, 6, 9, 23, 59, 59).unwrap();
    let day_of = Utc.with_ymd_and_hms(2025, 6, 10, 0, 0, 0).unwrap();
    assert_eq!(reg.cost_micros("openai", "o3", &usage, day_before), Some(10_000_000));
    assert_eq!(reg.cost_micros("openai", "o3", &usage, day_of), Some(2_000_000));
}

#[test]
fn an_operator_file_overrides_and_extends() {
    let mut reg = PriceRegistry::builtin().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.toml");
    std::fs::write(
        &path,
        r#"
version = "acme-2026-01"

[[model]]
provider = "anthropic"
model = "claude-sonnet-4-5"
context_window = 1000000
max_output = 64000
rank = 90
capabilities = { tools = true }
price = [{ effective = "2025-01-01", input = 2.5, output = 12.5 }]

[[model]]
provider = "ollama"
model = "qwen3-coder:30b"
rank = 40
price = [{ effective = "2025-01-01", input = 0.0, output = 0.0 }]
"#,
    )
    .unwrap();
    reg.extend(PriceRegistry::load(&path).unwrap());
    assert_eq!(reg.versions(), ["2025-12-01", "acme-2026-01"]);
    let now = Utc::now();
    let usage = Usage { input: 1_000_000, cache_read: 1_000_000, output: 1_000_000, ..Usage::default() };
    // Replaced: cache reads now default to the input rate.
    assert_eq!(reg.cost_micros("anthropic", "claude-sonnet-4-5", &usage, now), Some(17_500_000));
    assert_eq!(reg.model("anthropic", "claude-sonnet-4-5").unwrap().context_window, Some(1_000_000));
    // Added: a free local model costs 0 because its price says so.
    assert_eq!(reg.cost_micros("ollama", "qwen3-coder:30b", &usage, now), Some(0));
    assert_eq!(PriceRegistry::builtin_with(&path).unwrap(), reg);
}

#[test]
fn bad_files_are_refused_with_the_reason() {
    let cases = [
        ("version = 1", "invalid type"),
        ("version = \"x\"\n[[model]]\nprovider = \"a\"\nmodel = \"m\"\nprice = []", "a/m has no price"),
        (
            "version = \"x\"\n[[model]]\nprovider = \"a\"\nmodel = \"m\"\nprice = [{ effective = \"2025-01-01\", input = -1.0, output = 1.0 }]",
            "negative",
        ),
        (
            "version = \"x\"\n[[model]]\nprovider = \"a\"\nmodel = \"m\"\nprice = [{ effective = \"2025-01-01\", input = 1.0, output = 1.0, typo = 2.0 }]",
            "unknown field",
        ),
        (
            "version = \"x\"\n[[model]]\nprovider = \"a\"\nmodel = \"m\"\nprice = [{ effective = \"2025-01-01\", input = 1.0, output = 1.0 }, { effective = \"2025-01-01\", input = 2.0, output = 1.0 }]",
            "same effective date",
        ),
    ];
    for (text, needle) in cases {
        let err = PriceRegistry::from_toml_str("ops.toml", text).unwrap_err().to_string();
        assert!(err.contains("ops.toml") && err.contains(needle), "{needle}: {err}");
    }
    let err = PriceRegistry::load("/nonexistent/prices.toml").unwrap_err().to_string();
    assert!(err.contains("/nonexistent/prices.toml"), "{err}");
}
