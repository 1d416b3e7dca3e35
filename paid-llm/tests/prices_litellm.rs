//! The shipped price registry (`data/prices.toml`) against the price map
//! bundled in a pinned `litellm` release from PyPI, a maintained source.
//!
//! Every entry of LiteLLM's map for a provider the registry knows
//! (`litellm_provider` `anthropic`, `openai`, `gemini`; keyed `name` or
//! `provider/name`) that the registry resolves, by name, alias or dated
//! snapshot exactly as the proxy prices a request, must agree on the rates
//! in force today (input, output, cache read, cache write, reasoning) and the
//! limits. Any disagreement fails the test with a table of all of them.
//!
//! `scripts/provision-litellm-prices` fetches the map into `target/litellm/`
//! (`scripts/test` runs it; override the directory with `PAID_LITELLM_DIR`).
//! A missing map fails the test: it is never skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{NaiveDate, Utc};
use paid_llm::prices::{ModelInfo, PriceRegistry};
use serde_json::{Map, Value};

/// The registry lists 20 models, of which LiteLLM 1.110.2 prices 16; a lower
/// count means the matching broke, and the comparison proves nothing.
const MIN_MATCHED_MODELS: usize = 15;

fn litellm_dir() -> PathBuf {
    std::env::var_os("PAID_LITELLM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/litellm"))
}

/// LiteLLM's version and its map.
fn litellm_map() -> (String, Map<String, Value>) {
    let dir = litellm_dir();
    let path = dir.join("model_prices_and_context_window.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read LiteLLM's price map {} ({e}); run scripts/provision-litellm-prices \
             (scripts/test does){}",
            path.display(),
            if std::env::var_os("CI").is_some() { ". CI must provision it: this test is never skipped" } else { "" }
        )
    });
    let version = std::fs::read_to_string(dir.join("VERSION")).map(|v| v.trim().to_string()).unwrap_or_default();
    let map = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not a JSON object: {e}", path.display()));
    (version, map)
}

/// USD per token (LiteLLM) → pico-USD per token, as an integer.
fn pico_per_token(usd: f64) -> i128 {
    (usd * 1e12).round() as i128
}

/// USD per million tokens (prices.toml) → pico-USD per token.
fn pico_per_mtok(usd: f64) -> i128 {
    (usd * 1e6).round() as i128
}

/// USD per million tokens, for the table.
fn mtok(pico: i128) -> String {
    format!("${}", pico as f64 / 1e6)
}

/// A token limit, for the table.
fn tokens(limit: Option<u64>) -> String {
    limit.map_or("none".into(), |n| n.to_string())
}

struct Mismatch {
    key: String,
    model: String,
    field: &'static str,
    ours: String,
    theirs: String,
}

/// Compares one LiteLLM entry with the registry model it resolves to.
fn compare(key: &str, entry: &Map<String, Value>, info: &ModelInfo, out: &mut Vec<Mismatch>) {
    let mut push = |field, ours: String, theirs: String| {
        out.push(Mismatch { key: key.into(), model: info.model.clone(), field, ours, theirs })
    };
    let num = |field: &str| entry.get(field).map(|v| v.as_f64().ok_or_else(|| v.to_string()));

    let today = Utc::now();
    let Some(price) = info.price_at(today) else {
        push("price", "none in force today".into(), "listed".into());
        return;
    };
    let ours_input = pico_per_mtok(price.input);
    let ours_output = pico_per_mtok(price.output);
    let theirs = |field: &str, default: Option<i128>| -> Result<Option<i128>, String> {
        match num(field) {
            Some(Ok(usd)) => Ok(Some(pico_per_token(usd))),
            Some(Err(raw)) => Err(raw),
            None => Ok(default),
        }
    };
    let (their_input, their_output) =
        match (theirs("input_cost_per_token", None), theirs("output_cost_per_token", None)) {
            (Ok(Some(i)), Ok(Some(o))) => (i, o),
            (i, o) => {
                push("input/output", format!("{}/{}", mtok(ours_input), mtok(ours_output)), format!("{i:?}/{o:?}"));
                return;
            }
        };
    // A bucket either file leaves out is billed at the input rate (cache) or
    // the output rate (reasoning), so compare the rates actually charged.
    let rows = [
        ("input", ours_input, Ok(Some(their_input))),
        ("output", ours_output, Ok(Some(their_output))),
        (
            "cache_read",
            pico_per_mtok(price.cache_read.unwrap_or(price.input)),
            theirs("cache_read_input_token_cost", Some(their_input)),
        ),
        (
            "cache_write",
            pico_per_mtok(price.cache_write.unwrap_or(price.input)),
            theirs("cache_creation_input_token_cost", Some(their_input)),
        ),
        (
            "reasoning",
            pico_per_mtok(price.reasoning.unwrap_or(price.output)),
            theirs("output_cost_per_reasoning_token", Some(their_output)),
        ),
    ];
    for (field, ours, theirs) in rows {
        match theirs {
            Ok(Some(t)) if t == ours => {}
            Ok(t) => push(field, mtok(ours), t.map_or("none".into(), mtok)),
            Err(raw) => push(field, mtok(ours), raw),
        }
    }

    let limit = |field: &str| entry.get(field).and_then(Value::as_u64);
    let (max_input, max_output) = (limit("max_input_tokens"), limit("max_output_tokens"));
    if let Some(theirs) = max_output
        && info.max_output != Some(theirs)
    {
        push("max_output", tokens(info.max_output), theirs.to_string());
    }
    // LiteLLM records the input cap. Anthropic and Google publish that as the
    // context window; OpenAI publishes input + output (gpt-5: 272k + 128k =
    // 400k). Either reading is accepted.
    if let Some(theirs) = max_input {
        let window = [Some(theirs), max_output.map(|o| theirs + o)];
        if !window.contains(&info.context_window) {
            let sum = max_output.map_or(String::new(), |o| format!(" (+{o} output = {})", theirs + o));
            push("context_window", tokens(info.context_window), format!("{theirs}{sum}"));
        }
    }
}

#[test]
fn the_registry_agrees_with_litellms_price_map() {
    let reg = PriceRegistry::builtin().unwrap();
    let (version, map) = litellm_map();
    let providers: BTreeSet<&str> = reg.models().map(|m| m.provider.as_str()).collect();
    let today: NaiveDate = Utc::now().date_naive();

    let mut mismatches = Vec::new();
    let mut matched: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut retired = Vec::new();
    for (key, entry) in &map {
        let Some(entry) = entry.as_object() else { continue };
        let Some(provider) = entry.get("litellm_provider").and_then(Value::as_str) else { continue };
        if !providers.contains(provider) {
            continue;
        }
        let name = key.strip_prefix(&format!("{provider}/")).unwrap_or(key);
        let Some(info) = reg.model(provider, name) else { continue };
        // A dated snapshot the registry only reaches by dropping its date, and
        // that its provider has retired, can no longer be called (nor billed).
        let listed = info.model == name || info.aliases.iter().any(|a| a == name);
        let gone = entry
            .get("deprecation_date")
            .and_then(Value::as_str)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .is_some_and(|d| d <= today);
        if !listed && gone {
            retired.push(format!("{key} (retired, priced as {})", info.model));
            continue;
        }
        compare(key, entry, info, &mut mismatches);
        matched.entry((info.provider.clone(), info.model.clone())).or_default().push(key.clone());
    }

    let total = reg.models().count();
    println!(
        "litellm {version}: {} entries compared for {} of {total} registry models",
        matched.values().map(Vec::len).sum::<usize>(),
        matched.len()
    );
    for ((provider, model), keys) in &matched {
        println!("  {provider}/{model}: {}", keys.join(", "));
    }
    let unmatched: Vec<String> = reg
        .models()
        .filter(|m| !matched.contains_key(&(m.provider.clone(), m.model.clone())))
        .map(|m| format!("{}/{}", m.provider, m.model))
        .collect();
    println!("not in LiteLLM's map: {}", if unmatched.is_empty() { "none".into() } else { unmatched.join(", ") });
    if !retired.is_empty() {
        println!("skipped: {}", retired.join(", "));
    }

    if !mismatches.is_empty() {
        let mut table = format!(
            "{:<36} {:<24} {:<15} {:>14} {:>14}\n",
            "LiteLLM key", "prices.toml model", "field", "prices.toml", "LiteLLM"
        );
        for m in &mismatches {
            table += &format!("{:<36} {:<24} {:<15} {:>14} {:>14}\n", m.key, m.model, m.field, m.ours, m.theirs);
        }
        panic!(
            "data/prices.toml disagrees with LiteLLM {version}'s price map in {} places \
             (rates in USD per million tokens; fix prices.toml with a new dated price):\n{table}",
            mismatches.len()
        );
    }
    assert!(
        matched.len() >= MIN_MATCHED_MODELS,
        "only {} registry models matched LiteLLM's map (expected at least {MIN_MATCHED_MODELS}); is the map complete?",
        matched.len()
    );
}
