use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

use crate::{RunId, Timestamp};

/// Tokens used, in disjoint buckets (no token is counted twice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens not served from a cache.
    pub input: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
    /// Output tokens, excluding reasoning.
    pub output: u64,
    /// Reasoning tokens.
    pub reasoning: u64,
}

impl Usage {
    /// All tokens.
    pub fn total(&self) -> u64 {
        self.input + self.cache_read + self.cache_write + self.output + self.reasoning
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Self) {
        self.input += rhs.input;
        self.cache_read += rhs.cache_read;
        self.cache_write += rhs.cache_write;
        self.output += rhs.output;
        self.reasoning += rhs.reasoning;
    }
}

/// One metered LLM request (or one agent's self-reported total).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The run.
    pub run_id: RunId,
    /// Provider name, e.g. `anthropic`.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Tokens.
    pub usage: Usage,
    /// Cost in micro-USD; `None` when the price is unknown (never 0 for unknown).
    pub cost_micros: Option<i64>,
    /// Request latency.
    pub latency_ms: u64,
    /// HTTP status or outcome, e.g. `200`.
    pub status: String,
    /// When.
    pub at: Timestamp,
}
