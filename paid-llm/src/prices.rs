//! The versioned price registry: what each model costs per token bucket,
//! since when, and what it can do.
//!
//! The registry ships as `data/prices.toml` ([`PriceRegistry::builtin`]);
//! operators load their own file on top of it ([`PriceRegistry::load`],
//! [`PriceRegistry::extend`]), where an entry for the same provider and
//! model replaces the built-in one.
//!
//! A model the registry does not know has no cost: [`PriceRegistry::cost_micros`]
//! returns `None`, never 0.
//!
//! ```
//! use paid_core::Usage;
//! use paid_llm::prices::PriceRegistry;
//!
//! let mut prices = PriceRegistry::builtin().unwrap();
//! prices.extend(PriceRegistry::from_toml_str("ops.toml", r#"
//!     version = "ops-1"
//!     [[model]]
//!     provider = "ollama"
//!     model = "qwen3-coder"
//!     price = [{ effective = "2025-01-01", input = 0.0, output = 0.0 }]
//! "#).unwrap());
//!
//! let at = chrono::Utc::now();
//! let usage = Usage { input: 1_000_000, output: 1_000_000, ..Usage::default() };
//! // $3 + $15 per million.
//! assert_eq!(prices.cost_micros("anthropic", "claude-sonnet-4-5", &usage, at), Some(18_000_000));
//! assert_eq!(prices.cost_micros("ollama", "qwen3-coder", &usage, at), Some(0));
//! assert_eq!(prices.cost_micros("acme", "mystery-1", &usage, at), None);
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use paid_core::{ModelCandidate, Timestamp, Usage};
use serde::{Deserialize, Serialize};

use crate::error::Error;

const BUILTIN: &str = include_str!("../data/prices.toml");

/// What a model can do. Missing flags are `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    /// It can call tools.
    pub tools: bool,
    /// It accepts images.
    pub vision: bool,
    /// It reasons (thinks) before answering.
    pub reasoning: bool,
    /// It has a prompt cache.
    pub prompt_cache: bool,
}

/// USD per million tokens for each bucket, from a date on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// The first day (UTC) this price applies.
    pub effective: NaiveDate,
    /// Uncached input.
    pub input: f64,
    /// Output, reasoning excluded.
    pub output: f64,
    /// Cache reads; the input rate when absent.
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Cache writes; the input rate when absent.
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Reasoning; the output rate when absent.
    #[serde(default)]
    pub reasoning: Option<f64>,
}

/// Rates in pico-USD per token (= micro-USD per million tokens), so costs
/// add up exactly in integers.
#[derive(Debug, Clone, Copy)]
struct Rates {
    input: u128,
    cache_read: u128,
    cache_write: u128,
    output: u128,
    reasoning: u128,
}

fn pico(usd_per_mtok: f64) -> u128 {
    // Validated finite and non-negative at load; six decimals are exact.
    (usd_per_mtok * 1e6).round() as u128
}

impl Price {
    fn rates(&self) -> Rates {
        Rates {
            input: pico(self.input),
            cache_read: pico(self.cache_read.unwrap_or(self.input)),
            cache_write: pico(self.cache_write.unwrap_or(self.input)),
            output: pico(self.output),
            reasoning: pico(self.reasoning.unwrap_or(self.output)),
        }
    }

    /// The cost of `usage` at this price, in micro-USD, rounded half up.
    pub fn cost_micros(&self, usage: &Usage) -> i64 {
        let r = self.rates();
        let picos = u128::from(usage.input) * r.input
            + u128::from(usage.cache_read) * r.cache_read
            + u128::from(usage.cache_write) * r.cache_write
            + u128::from(usage.output) * r.output
            + u128::from(usage.reasoning) * r.reasoning;
        i64::try_from((picos + 500_000) / 1_000_000).unwrap_or(i64::MAX)
    }

    /// The most `input` and `output` tokens can cost at this price, in
    /// micro-USD, rounded up: input at the dearest of the input, cache read
    /// and cache write rates, output at the dearer of the output and
    /// reasoning rates.
    pub fn worst_cost_micros(&self, input: u64, output: u64) -> i64 {
        let r = self.rates();
        let input_rate = r.input.max(r.cache_read).max(r.cache_write);
        let output_rate = r.output.max(r.reasoning);
        let picos = u128::from(input) * input_rate + u128::from(output) * output_rate;
        i64::try_from(picos.div_ceil(1_000_000)).unwrap_or(i64::MAX)
    }

    /// A blended USD per million tokens: three parts input to one part
    /// output, the usual shape of agent traffic before caching.
    pub fn blended_usd_per_mtok(&self) -> f64 {
        (3.0 * self.input + self.output) / 4.0
    }

    fn validate(&self) -> Result<(), String> {
        let rates = [Some(self.input), Some(self.output), self.cache_read, self.cache_write, self.reasoning];
        if rates.into_iter().flatten().any(|r| !(0.0..=1e6).contains(&r)) {
            return Err(format!("price effective {} has a negative, huge or non-numeric rate", self.effective));
        }
        Ok(())
    }
}

/// One model: limits, capabilities and its prices over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// Provider name, as usage is recorded (`anthropic`, `openai`, ...).
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Other names of the same model (dated snapshots).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Context window in tokens.
    #[serde(default)]
    pub context_window: Option<u64>,
    /// Output cap in tokens.
    #[serde(default)]
    pub max_output: Option<u64>,
    /// Capability rank, higher is more capable.
    #[serde(default)]
    pub rank: u32,
    /// What it can do.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Prices, by effective date.
    #[serde(rename = "price")]
    pub prices: Vec<Price>,
}

impl ModelInfo {
    /// The price in force at `at`: the latest one effective on or before
    /// its date. `None` before the first.
    pub fn price_at(&self, at: Timestamp) -> Option<&Price> {
        let day = at.date_naive();
        self.prices.iter().filter(|p| p.effective <= day).max_by_key(|p| p.effective)
    }

    /// The newest price.
    pub fn current_price(&self) -> Option<&Price> {
        self.prices.iter().max_by_key(|p| p.effective)
    }

    /// As a selector candidate, priced at its newest price.
    pub fn candidate(&self) -> ModelCandidate {
        ModelCandidate {
            provider: self.provider.clone(),
            model: self.model.clone(),
            context_window: self.context_window,
            usd_per_mtok: self.current_price().map(Price::blended_usd_per_mtok),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let name = format!("{}/{}", self.provider, self.model);
        if self.provider.trim().is_empty() || self.model.trim().is_empty() {
            return Err("an entry has an empty provider or model".into());
        }
        if self.prices.is_empty() {
            return Err(format!(
                "{name} has no price; add price = [{{ effective = \"YYYY-MM-DD\", input = .., output = .. }}]"
            ));
        }
        let mut dates: Vec<_> = self.prices.iter().map(|p| p.effective).collect();
        dates.sort();
        dates.dedup();
        if dates.len() != self.prices.len() {
            return Err(format!("{name} lists two prices with the same effective date"));
        }
        if self.context_window == Some(0) || self.max_output == Some(0) {
            return Err(format!("{name} has a zero context window or output cap"));
        }
        self.prices.iter().try_for_each(Price::validate).map_err(|e| format!("{name}: {e}"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    version: String,
    #[serde(default, rename = "model")]
    models: Vec<ModelInfo>,
}

/// Known models, their prices over time, limits and capabilities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceRegistry {
    versions: Vec<String>,
    models: BTreeMap<(String, String), ModelInfo>,
}

impl PriceRegistry {
    /// The registry shipped with this crate (`data/prices.toml`).
    pub fn builtin() -> Result<Self, Error> {
        Self::from_toml_str("built-in prices.toml", BUILTIN)
    }

    /// Parses a price file; `source_name` names it in errors.
    pub fn from_toml_str(source_name: &str, text: &str) -> Result<Self, Error> {
        let bad = |message: String| Error::Prices { source_name: source_name.to_string(), message };
        let file: PriceFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut models = BTreeMap::new();
        for m in file.models {
            m.validate().map_err(bad)?;
            let key = (m.provider.clone(), m.model.clone());
            if models.insert(key, m).is_some() {
                return Err(bad("a provider/model pair is listed twice".into()));
            }
        }
        Ok(Self { versions: vec![file.version], models })
    }

    /// Reads a price file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Io { what: format!("reading price file {}", path.display()), source: e })?;
        Self::from_toml_str(&path.display().to_string(), &text)
    }

    /// The built-in registry with the operator's file on top.
    pub fn builtin_with(path: impl AsRef<Path>) -> Result<Self, Error> {
        let mut reg = Self::builtin()?;
        reg.extend(Self::load(path)?);
        Ok(reg)
    }

    /// Adds `other`'s models, replacing entries for the same provider and model.
    pub fn extend(&mut self, other: PriceRegistry) {
        self.versions.extend(other.versions);
        self.models.extend(other.models);
    }

    /// The versions of the files this registry was built from, in order.
    pub fn versions(&self) -> &[String] {
        &self.versions
    }

    /// Every model, by provider and name.
    pub fn models(&self) -> impl Iterator<Item = &ModelInfo> {
        self.models.values()
    }

    /// Looks a model up by name or alias. A dated snapshot name
    /// (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`) falls back to its
    /// undated name.
    pub fn model(&self, provider: &str, model: &str) -> Option<&ModelInfo> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        let find = |name: &str| {
            self.models.get(&(provider.to_string(), name.to_string())).or_else(|| {
                self.models.values().find(|m| m.provider == provider && m.aliases.iter().any(|a| a == name))
            })
        };
        find(model).or_else(|| strip_date_suffix(model).and_then(find))
    }

    /// The cost of `usage` on `provider`/`model` at `at`, in micro-USD.
    /// `None` when the model, or a price for that date, is unknown.
    pub fn cost_micros(&self, provider: &str, model: &str, usage: &Usage, at: Timestamp) -> Option<i64> {
        Some(self.model(provider, model)?.price_at(at)?.cost_micros(usage))
    }

    /// Every model as a selector candidate.
    pub fn candidates(&self) -> Vec<ModelCandidate> {
        self.models().map(ModelInfo::candidate).collect()
    }
}

/// `name-YYYYMMDD` or `name-YYYY-MM-DD` → `name`.
fn strip_date_suffix(model: &str) -> Option<&str> {
    let is_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((head, tail)) = model.rsplit_once('-')
        && is_digits(tail, 8)
    {
        return Some(head);
    }
    let parts: Vec<&str> = model.rsplitn(4, '-').collect();
    if parts.len() == 4 && is_digits(parts[0], 2) && is_digits(parts[1], 2) && is_digits(parts[2], 4) {
        return Some(parts[3]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses() {
        let reg = PriceRegistry::builtin().unwrap();
        assert!(reg.models().count() >= 10);
        assert!(reg.model("openai", "gpt-4o-2024-08-06").is_some());
        assert!(reg.model("anthropic", "claude-sonnet-4-5-20250929").is_some());
        assert!(reg.model("gemini", "models/gemini-2.5-pro").is_some());
    }

    #[test]
    fn date_suffixes() {
        assert_eq!(strip_date_suffix("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(strip_date_suffix("claude-x-20250101"), Some("claude-x"));
        assert_eq!(strip_date_suffix("gpt-5"), None);
    }
}
