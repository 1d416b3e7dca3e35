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
    /// All tokens (saturating: counts reported by a CLI may be anything).
    pub fn total(&self) -> u64 {
        [self.cache_read, self.cache_write, self.output, self.reasoning]
            .into_iter()
            .fold(self.input, u64::saturating_add)
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Self) {
        self.input = self.input.saturating_add(rhs.input);
        self.cache_read = self.cache_read.saturating_add(rhs.cache_read);
        self.cache_write = self.cache_write.saturating_add(rhs.cache_write);
        self.output = self.output.saturating_add(rhs.output);
        self.reasoning = self.reasoning.saturating_add(rhs.reasoning);
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

impl UsageRecord {
    /// The provider name of usage an agent reported about itself:
    /// `agent:<agent>`.
    pub const REPORTED_PREFIX: &str = "agent:";

    /// The largest cost a report may carry, in micro-USD ($1,000).
    pub const MAX_REPORTED_COST_MICROS: i64 = 1_000_000_000;

    /// The largest count a report may carry in one bucket (10^12 tokens).
    pub const MAX_REPORTED_TOKENS: u64 = 1_000_000_000_000;

    /// What `agent` reported about its own usage, as data: with `metered`
    /// (a proxy counts the run's requests and charges them), the report
    /// carries no cost, so it never adds to what budgets and costs count;
    /// otherwise its cost is kept within `0..=`[`Self::MAX_REPORTED_COST_MICROS`].
    /// Each token count is kept within [`Self::MAX_REPORTED_TOKENS`].
    ///
    /// ```
    /// use paid_core::{RunId, Usage, UsageRecord};
    ///
    /// let run = RunId(uuid::Uuid::nil());
    /// let at = chrono::DateTime::UNIX_EPOCH;
    /// let huge = Some(i64::MAX);
    /// assert_eq!(UsageRecord::reported(run, "aider", "m", Usage::default(), huge, true, at).cost_micros, None);
    /// let unmetered = UsageRecord::reported(run, "aider", "m", Usage::default(), huge, false, at);
    /// assert_eq!(unmetered.cost_micros, Some(UsageRecord::MAX_REPORTED_COST_MICROS));
    /// assert!(unmetered.is_reported());
    /// ```
    pub fn reported(
        run_id: RunId,
        agent: &str,
        model: &str,
        usage: Usage,
        cost_micros: Option<i64>,
        metered: bool,
        at: Timestamp,
    ) -> Self {
        Self {
            run_id,
            provider: format!("{}{agent}", Self::REPORTED_PREFIX),
            model: model.to_string(),
            usage: Usage {
                input: usage.input.min(Self::MAX_REPORTED_TOKENS),
                cache_read: usage.cache_read.min(Self::MAX_REPORTED_TOKENS),
                cache_write: usage.cache_write.min(Self::MAX_REPORTED_TOKENS),
                output: usage.output.min(Self::MAX_REPORTED_TOKENS),
                reasoning: usage.reasoning.min(Self::MAX_REPORTED_TOKENS),
            },
            cost_micros: if metered { None } else { cost_micros.map(|c| c.clamp(0, Self::MAX_REPORTED_COST_MICROS)) },
            latency_ms: 0,
            status: "reported".into(),
            at,
        }
    }

    /// Whether an agent reported it (see [`UsageRecord::reported`]), rather
    /// than a proxy metering a request.
    pub fn is_reported(&self) -> bool {
        self.provider.starts_with(Self::REPORTED_PREFIX)
    }
}
