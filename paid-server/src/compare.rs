//! Comparison runs as the daemon spells them: `models`, a `rule` (`best`
//! or `human`) and an optional `ranking`, the same in `paid.toml`'s
//! `[projects.compare]`, the API's `compare` object and the CLI's
//! `--compare`/`--pick`/`--rank`; turned into the engine's
//! [`CompareSpec`].

use paid_core::engine::{CompareSpec, Criterion, Ranking, SelectionRule};

pub use paid_api::CompareRequest;

/// Why a comparison was refused: the offending field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CompareError {
    /// `models`, `rule` or `ranking`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> CompareError {
    CompareError { field, reason: reason.into() }
}

/// The criteria names `ranking` accepts.
pub const CRITERIA: &[&str] = &["verify_passed", "cost", "iterations", "lines_changed", "files_changed", "duration"];

fn criterion(name: &str) -> Option<Criterion> {
    serde_json::from_value(serde_json::Value::String(name.trim().to_string())).ok()
}

/// Turns a written comparison into the engine's spec.
pub trait ToSpec {
    /// The spec, or the field that is wrong.
    fn to_spec(&self) -> Result<CompareSpec, CompareError>;
}

impl ToSpec for CompareRequest {
    /// Checks the request and builds the engine's spec.
    fn to_spec(&self) -> Result<CompareSpec, CompareError> {
        let models: Vec<String> = self.models.iter().map(|m| m.trim().to_string()).collect();
        let max = CompareSpec::MAX_CANDIDATES;
        if !(2..=max).contains(&models.len()) {
            return Err(refuse("models", format!("a comparison needs 2 to {max} models, got {}", models.len())));
        }
        if let Some(i) = models.iter().position(String::is_empty) {
            return Err(refuse("models", format!("entry {i} is empty")));
        }
        if let Some((i, m)) = models.iter().enumerate().find(|(i, m)| models[..*i].contains(m)) {
            return Err(refuse("models", format!("{m:?} is listed twice (entry {i})")));
        }
        let ranking = if self.ranking.is_empty() {
            Ranking::default()
        } else {
            let mut criteria = Vec::new();
            for name in &self.ranking {
                let c = criterion(name).ok_or_else(|| {
                    refuse("ranking", format!("unknown criterion {name:?}; known: {}", CRITERIA.join(", ")))
                })?;
                if criteria.contains(&c) {
                    return Err(refuse("ranking", format!("{name:?} is listed twice")));
                }
                criteria.push(c);
            }
            Ranking { criteria }
        };
        let rule = match self.rule.as_deref().map(str::trim).unwrap_or("best") {
            "best" => SelectionRule::Best(ranking),
            "human" if self.ranking.is_empty() => SelectionRule::Human,
            "human" => return Err(refuse("ranking", "a ranking is for rule \"best\"; a human picks with \"human\"")),
            other => return Err(refuse("rule", format!("{other:?} is neither \"best\" nor \"human\""))),
        };
        let spec = CompareSpec::models(models).rule(rule);
        spec.validate().map_err(|e| refuse("models", e.to_string()))?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(models: &[&str], rule: Option<&str>, ranking: &[&str]) -> CompareRequest {
        CompareRequest {
            models: models.iter().map(|s| s.to_string()).collect(),
            rule: rule.map(str::to_string),
            ranking: ranking.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn specs_are_built_with_their_rule_and_ranking() {
        let spec = req(&["a", "b"], Some("human"), &[]).to_spec().unwrap();
        assert_eq!(spec.rule, SelectionRule::Human);
        assert_eq!(spec.names(), ["c1-a", "c2-b"]);
        let spec = req(&["a", "b", "c"], None, &["cost", "verify_passed"]).to_spec().unwrap();
        assert_eq!(
            spec.rule,
            SelectionRule::Best(Ranking { criteria: vec![Criterion::Cost, Criterion::VerifyPassed] })
        );
        assert_eq!(req(&["a", "b"], None, &[]).to_spec().unwrap().rule, SelectionRule::default());
    }

    #[test]
    fn bad_requests_name_the_field() {
        let field = |r: CompareRequest| r.to_spec().unwrap_err().field;
        assert_eq!(field(req(&["a"], None, &[])), "models");
        assert_eq!(field(req(&["a", " "], None, &[])), "models");
        assert_eq!(field(req(&["a", "a"], None, &[])), "models");
        assert_eq!(field(req(&["a"; 9], None, &[])), "models");
        assert_eq!(field(req(&["a", "b"], Some("random"), &[])), "rule");
        assert_eq!(field(req(&["a", "b"], None, &["speed"])), "ranking");
        assert_eq!(field(req(&["a", "b"], None, &["cost", "cost"])), "ranking");
        assert_eq!(field(req(&["a", "b"], Some("human"), &["cost"])), "ranking");
        let e = req(&["a", "b"], None, &["speed"]).to_spec().unwrap_err();
        assert!(e.reason.contains("lines_changed"), "{e}");
    }
}
