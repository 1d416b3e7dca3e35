//! Learning: quality scores, experiment statistics, experiments, versioned
//! prompts, prompt evolution and the strategies that decide between variants.
//!
//! Everything here is a pure function over data, except the drivers
//! ([`driver::Learning`], [`evolution::evolve`]), which sequence calls to
//! ports ([`LearningStore`](crate::ports::learning::LearningStore),
//! [`LlmProvider`](crate::LlmProvider), [`EvolutionStrategy`]) and do no I/O
//! of their own.
//!
//! ```
//! use paid_core::learning::score::ScoreWeights;
//! use paid_core::learning::stats::{BetaPosterior, prob_beats};
//!
//! // Weights are data (DESIGN §7); a merged PR with green CI and one iteration
//! // scores high even before anyone votes.
//! let weights = ScoreWeights::default();
//! assert_eq!(weights.pr_merged, 0.30);
//!
//! // 60/100 successes against 40/100: the variant almost surely beats control.
//! let control = BetaPosterior::from_counts(40, 60);
//! let variant = BetaPosterior::from_counts(60, 40);
//! assert!(prob_beats(&control, &variant) > 0.99);
//! ```
//!
//! The pieces, in the order a prompt goes through them:
//!
//! - [`prompts`]: immutable [`PromptVersion`](prompts::PromptVersion)s, style
//!   guides, and the check that a template renders with exactly its declared
//!   variables.
//! - [`score`]: an [`Outcome`](crate::Outcome) becomes a quality score in
//!   `[0, 1]`, with [`ScoreWeights`](score::ScoreWeights) as data.
//! - [`stats`]: Beta and Normal posteriors, P(B beats A), expected loss, Bayes
//!   factors, Welch's t-test.
//! - [`experiment`]: a control and variants, sticky assignment, allocation,
//!   and the promotion rules.
//! - [`strategy`]: the [`EvolutionStrategy`] port and the built-in native
//!   strategies; WASM ones live in `paid-wasm`.
//! - [`evolution`]: the evolution workflow (skip rules, sampling, the LLM
//!   request, parsing and validating mutations, a new experiment).
//! - [`sampler`]: the reproducible random draws that native and WASM
//!   strategies share.
//! - [`driver`]: [`Learning`](driver::Learning), which runs all of the above
//!   over a [`LearningStore`](crate::ports::learning::LearningStore).

pub mod driver;
pub mod evolution;
pub mod experiment;
pub mod prompts;
pub mod sampler;
pub mod score;
pub mod stats;
pub mod strategy;

pub use strategy::EvolutionStrategy;

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! learning_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Parses the canonical hyphenated form.
            pub fn parse(s: &str) -> crate::Result<Self> {
                Uuid::parse_str(s).map($name).map_err(|e| crate::Error::InvalidInput {
                    what: stringify!($name).to_string(),
                    message: e.to_string(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

learning_id!(
    /// Identifies a [`PromptVersion`](prompts::PromptVersion).
    PromptVersionId
);
learning_id!(
    /// Identifies an [`Experiment`](experiment::Experiment).
    ExperimentId
);
