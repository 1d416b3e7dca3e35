use serde::{Deserialize, Serialize};

use crate::{RunId, Timestamp};

/// The longest model name [`validate_model_name`] accepts.
pub const MAX_MODEL_NAME_LEN: usize = 100;

/// Whether `name` may be used as a model name: 1 to
/// [`MAX_MODEL_NAME_LEN`] bytes of ASCII letters, digits and `. _ : / @ -`
/// (`claude-sonnet-4-5`, `gpt-5`, `models/gemini-2.5-pro`,
/// `llama3.1:70b`, `org/model@rev`).
///
/// Model names reach metric labels, log lines, database rows, branch names
/// (`c2-<model>`) and provider URLs, so every place one enters Paid (the
/// configuration, the API, the metering proxy) checks it with this
/// function, or accepts a model the price registry lists by name.
pub fn is_valid_model_name(name: &str) -> bool {
    (1..=MAX_MODEL_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:/@-".contains(&b))
}

/// [`is_valid_model_name`] as a check: [`crate::Error::InvalidInput`] (on
/// `model`) naming the rule, with at most the first 40 characters of the
/// refused name, escaped.
pub fn validate_model_name(name: &str) -> crate::Result<()> {
    if is_valid_model_name(name) {
        return Ok(());
    }
    let shown: String = name.chars().take(40).collect();
    let more = if name.chars().count() > 40 { "…" } else { "" };
    Err(crate::Error::InvalidInput {
        what: "model".into(),
        message: format!(
            "{shown:?}{more} is not a model name: use 1 to {MAX_MODEL_NAME_LEN} characters of A-Z a-z 0-9 . _ : / @ -"
        ),
    })
}

/// A model a selector may choose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCandidate {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Context window in tokens, if known.
    pub context_window: Option<u64>,
    /// Blended USD per million tokens, if known.
    pub usd_per_mtok: Option<f64>,
}

/// Which model a run uses, and why. Stored per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDecision {
    /// The run.
    pub run_id: RunId,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Which selector decided (`fixed`, `rules`, `meta_agent`, ...).
    pub selector: String,
    /// Why.
    pub reasoning: String,
    /// What it chose from.
    pub candidates: Vec<ModelCandidate>,
    /// Budget in micro-USD, if any.
    pub budget_micros: Option<i64>,
    /// Estimated task complexity in [0, 1], if estimated.
    pub complexity: Option<f64>,
    /// When.
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_a_bounded_charset() {
        for ok in ["claude-sonnet-4-5", "gpt-5", "models/gemini-2.5-pro", "llama3.1:70b", "org/m@rev_2", "a"] {
            assert!(is_valid_model_name(ok), "{ok}");
            assert!(validate_model_name(ok).is_ok(), "{ok}");
        }
        let long = "m".repeat(MAX_MODEL_NAME_LEN + 1);
        let thousand = "x".repeat(1000);
        for bad in ["", "gpt 5", "gpt-5\n", "gpt-5\nINJECTED 1", "claude\"}", "modèle", "a\tb", &long, &thousand] {
            assert!(!is_valid_model_name(bad), "{bad:?}");
            match validate_model_name(bad) {
                Err(crate::Error::InvalidInput { what, message }) => {
                    assert_eq!(what, "model");
                    assert!(!message.contains('\n'), "the refusal escapes the name: {message}");
                    assert!(message.len() < 200, "the refusal does not echo the whole name: {message}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(is_valid_model_name(&"m".repeat(MAX_MODEL_NAME_LEN)));
    }
}
