//! Comparison runs: what they are asked to compare ([`CompareSpec`]), what
//! each candidate produced ([`CandidateReport`]), how the winner is chosen
//! ([`SelectionRule`], [`Ranking`]) and the side-by-side table that goes
//! into the PR body and the issue comment. Pure data and functions; the
//! comparison role's side lives in `fanout.rs`, `candidate.rs` and
//! `choice.rs`.
//!
//! ```
//! use paid_core::engine::{Candidate, CandidateReport, Criterion, Ranking};
//!
//! let report = |name: &str, passed: bool, cost: i64| CandidateReport {
//!     verify_passed: passed,
//!     cost_micros: Some(cost),
//!     ..CandidateReport::empty(name, &Candidate::model(name))
//! };
//! let reports = [report("a", false, 1), report("b", true, 900), report("c", true, 300)];
//! // The default: verify passed first, then the lowest cost.
//! assert_eq!(Ranking::default().winner(&reports), Some(2));
//! // Only cost counts: the failing one is cheapest.
//! assert_eq!(Ranking { criteria: vec![Criterion::Cost] }.winner(&reports), Some(0));
//! ```

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::learning::ExperimentId;
use crate::learning::PromptVersionId;
use crate::learning::experiment::Variant;
use crate::{Error, Result, Worktree};

/// One contender of a comparison run: a model, optionally with its own
/// prompt version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The model handed to the agent (`AgentContext::model`).
    pub model: String,
    /// The prompt version to render (default: the run's own prompt).
    #[serde(default)]
    pub prompt_version: Option<PromptVersionId>,
}

impl Candidate {
    /// A candidate that runs `model` with the run's prompt.
    pub fn model(model: impl Into<String>) -> Self {
        Self { model: model.into(), prompt_version: None }
    }

    /// The same model with another prompt version.
    pub fn with_prompt(mut self, version: PromptVersionId) -> Self {
        self.prompt_version = Some(version);
        self
    }

    /// Whether this candidate runs what an experiment arm's `variant` runs.
    pub fn matches(&self, variant: &Variant) -> bool {
        match variant {
            Variant::Prompt { version } => self.prompt_version == Some(*version),
            Variant::Model { model, .. } => self.prompt_version.is_none() && &self.model == model,
        }
    }
}

/// A criterion of a [`Ranking`]; each prefers the smaller (or the passing)
/// value. An unknown value (e.g. a cost the agent did not report) ranks
/// after every known one. A candidate whose agent failed ranks last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// Verify passed (or the project has no verify commands).
    VerifyPassed,
    /// Reported cost in micro-USD.
    Cost,
    /// Agent iterations.
    Iterations,
    /// Lines added plus removed.
    LinesChanged,
    /// Files changed.
    FilesChanged,
    /// Wall-clock time of the candidate's agent and verify loop.
    Duration,
}

/// Ordered criteria: the first that tells two candidates apart decides.
/// Ties on every criterion go to the earlier candidate of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranking {
    /// Most important first.
    pub criteria: Vec<Criterion>,
}

impl Default for Ranking {
    /// Verify passed, then cost, iterations, lines changed, files changed,
    /// duration.
    fn default() -> Self {
        use Criterion::*;
        Self { criteria: vec![VerifyPassed, Cost, Iterations, LinesChanged, FilesChanged, Duration] }
    }
}

impl Ranking {
    /// Compares two reports: `Less` when `a` is better.
    pub fn compare(&self, a: &CandidateReport, b: &CandidateReport) -> Ordering {
        let failed = a.error.is_some().cmp(&b.error.is_some());
        if failed != Ordering::Equal {
            return failed;
        }
        for criterion in &self.criteria {
            let order = match criterion {
                Criterion::VerifyPassed => b.verify_passed.cmp(&a.verify_passed),
                Criterion::Cost => known_first(a.cost_micros, b.cost_micros),
                Criterion::Iterations => a.iterations.cmp(&b.iterations),
                Criterion::LinesChanged => known_first(a.lines_changed, b.lines_changed),
                Criterion::FilesChanged => a.files_changed.cmp(&b.files_changed),
                Criterion::Duration => a.duration_ms.cmp(&b.duration_ms),
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        Ordering::Equal
    }

    /// The index of the best report, `None` when there is none or every
    /// candidate failed.
    pub fn winner(&self, reports: &[CandidateReport]) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, r) in reports.iter().enumerate() {
            if r.error.is_some() {
                continue;
            }
            if best.is_none_or(|b| self.compare(r, &reports[b]) == Ordering::Less) {
                best = Some(i);
            }
        }
        best
    }
}

fn known_first<T: Ord>(a: Option<T>, b: Option<T>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// How the winner of a comparison run is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SelectionRule {
    /// The best by this ranking becomes the PR. As with a single run, no
    /// PR is opened when the project has verify commands and no candidate
    /// passed them: the run fails with `verify_failed`.
    Best(Ranking),
    /// The run waits in `awaiting_choice` (holding no worker) until
    /// [`crate::engine::Engine::pick`] names the winner.
    Human,
}

impl Default for SelectionRule {
    fn default() -> Self {
        SelectionRule::Best(Ranking::default())
    }
}

/// A comparison run: the same issue on each candidate, in parallel
/// sandboxes, then one winner becomes the PR.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareSpec {
    /// At least two candidates, at most [`CompareSpec::MAX_CANDIDATES`].
    pub candidates: Vec<Candidate>,
    /// How the winner is chosen.
    #[serde(default)]
    pub rule: SelectionRule,
    /// The experiment whose arms the candidates stand for: each candidate
    /// that matches an arm's variant is recorded as a sample of that arm
    /// (needs [`crate::engine::EngineBuilder::learning`]).
    #[serde(default)]
    pub experiment: Option<ExperimentId>,
}

impl CompareSpec {
    /// The most candidates one run may fan out to.
    pub const MAX_CANDIDATES: usize = 8;

    /// A spec over these models with the default rule.
    pub fn models<I, S>(models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { candidates: models.into_iter().map(Candidate::model).collect(), ..Self::default() }
    }

    /// Uses this rule.
    pub fn rule(mut self, rule: SelectionRule) -> Self {
        self.rule = rule;
        self
    }

    /// Checks the number of candidates and their models
    /// ([`crate::validate_model_name`]).
    pub fn validate(&self) -> Result<()> {
        let n = self.candidates.len();
        if !(2..=Self::MAX_CANDIDATES).contains(&n) {
            return Err(Error::InvalidInput {
                what: "compare.candidates".into(),
                message: format!("a comparison needs 2 to {} candidates, got {n}", Self::MAX_CANDIDATES),
            });
        }
        if self.candidates.iter().any(|c| c.model.trim().is_empty()) {
            return Err(Error::InvalidInput {
                what: "compare.candidates".into(),
                message: "every candidate needs a model".into(),
            });
        }
        // Candidate names (`c2-<model>`) become branch names and labels.
        for c in &self.candidates {
            if let Err(Error::InvalidInput { message, .. }) = crate::validate_model_name(&c.model) {
                return Err(Error::InvalidInput { what: "compare.candidates".into(), message });
            }
        }
        Ok(())
    }

    /// The display names of the candidates: `c1-<model>`, `c2-<model>`, ...
    pub fn names(&self) -> Vec<String> {
        self.candidates.iter().enumerate().map(|(i, c)| format!("c{}-{}", i + 1, c.model)).collect()
    }
}

/// What one candidate produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateReport {
    /// Its name ([`CompareSpec::names`]).
    pub name: String,
    /// What it ran.
    pub candidate: Candidate,
    /// The prompt version it rendered, when learning picked one.
    pub prompt_version: Option<PromptVersionId>,
    /// Its worktree (its own branch).
    pub worktree: Option<Worktree>,
    /// Whether its last verify passed (true when there is nothing to verify).
    pub verify_passed: bool,
    /// Agent iterations.
    pub iterations: u32,
    /// Reported cost in micro-USD, when every iteration reported one.
    pub cost_micros: Option<i64>,
    /// Agent and verify wall-clock time.
    pub duration_ms: u64,
    /// Files changed on its branch.
    pub files_changed: u64,
    /// Lines added plus removed, when the workspaces can tell.
    pub lines_changed: Option<u64>,
    /// The agent's last summary.
    pub summary: String,
    /// Why it could not finish (agent failure, timeout, no changes).
    pub error: Option<String>,
}

impl CandidateReport {
    /// A report with nothing done yet.
    pub fn empty(name: &str, candidate: &Candidate) -> Self {
        Self {
            name: name.to_string(),
            candidate: candidate.clone(),
            prompt_version: None,
            worktree: None,
            verify_passed: false,
            iterations: 0,
            cost_micros: None,
            duration_ms: 0,
            files_changed: 0,
            lines_changed: None,
            summary: String::new(),
            error: None,
        }
    }
}

/// The side-by-side markdown table of `reports`, the winner marked.
pub fn table(reports: &[CandidateReport], winner: Option<usize>) -> String {
    let mut out = String::from(
        "| | candidate | model | verify | iterations | cost | lines | files | duration |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (i, r) in reports.iter().enumerate() {
        let mark = if Some(i) == winner { "**winner**" } else { "" };
        let verify = match (&r.error, r.verify_passed) {
            (Some(e), _) => format!("error: {}", one_line(e, 60)),
            (None, true) => "passed".into(),
            (None, false) => "failed".into(),
        };
        let cost = r.cost_micros.map(|c| format!("${:.4}", c as f64 / 1e6)).unwrap_or_else(|| "-".into());
        let lines = r.lines_changed.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "| {mark} | {} | `{}` | {verify} | {} | {cost} | {lines} | {} | {:.1}s |\n",
            r.name,
            r.candidate.model,
            r.iterations,
            r.files_changed,
            r.duration_ms as f64 / 1000.0
        ));
    }
    out
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.chars().map(|c| if c == '\n' || c == '|' { ' ' } else { c }).collect();
    if flat.chars().count() <= max { flat } else { flat.chars().take(max).chain(['…']).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, passed: bool, cost: Option<i64>, iterations: u32, lines: u64) -> CandidateReport {
        CandidateReport {
            verify_passed: passed,
            cost_micros: cost,
            iterations,
            lines_changed: Some(lines),
            files_changed: 1,
            ..CandidateReport::empty(name, &Candidate::model(name))
        }
    }

    #[test]
    fn default_ranking_prefers_passing_then_cheap_then_few_iterations() {
        let r = Ranking::default();
        let reports = [
            report("fails-cheap", false, Some(1), 1, 1),
            report("passes-dear", true, Some(900), 1, 1),
            report("passes-cheap-slow", true, Some(300), 3, 1),
            report("passes-cheap-fast", true, Some(300), 1, 40),
        ];
        assert_eq!(r.winner(&reports), Some(3));
        let unknown_cost = [report("unknown", true, None, 1, 1), report("known", true, Some(5_000_000), 1, 1)];
        assert_eq!(r.winner(&unknown_cost), Some(1), "a known cost beats an unknown one");
    }

    #[test]
    fn failed_candidates_never_win_and_ties_keep_spec_order() {
        let mut broken = report("broken", true, Some(1), 1, 1);
        broken.error = Some("agent: crashed".into());
        let reports = [broken.clone(), report("a", false, Some(5), 1, 1), report("b", false, Some(5), 1, 1)];
        assert_eq!(Ranking::default().winner(&reports), Some(1));
        assert_eq!(Ranking::default().winner(&[broken]), None);
        let by_lines = Ranking { criteria: vec![Criterion::LinesChanged] };
        let reports = [report("big", true, None, 1, 90), report("small", false, None, 1, 3)];
        assert_eq!(by_lines.winner(&reports), Some(1));
    }

    #[test]
    fn specs_are_validated_and_serialized_with_their_rule() {
        assert!(CompareSpec::models(["one"]).validate().is_err());
        assert!(CompareSpec::models(["a", ""]).validate().is_err());
        let thousand = "m".repeat(1000);
        for bad in ["gpt 5", "gpt-5\nx", thousand.as_str()] {
            let e = CompareSpec::models(["a", bad]).validate().unwrap_err();
            assert!(e.to_string().contains("not a model name"), "{bad:?}: {e}");
        }
        let spec = CompareSpec::models(["a", "b"]).rule(SelectionRule::Human);
        spec.validate().unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["rule"], serde_json::json!({"kind": "human"}));
        assert_eq!(serde_json::from_value::<CompareSpec>(json).unwrap(), spec);
        assert_eq!(spec.names(), ["c1-a", "c2-b"]);
    }

    #[test]
    fn the_table_marks_the_winner_and_escapes_errors() {
        let mut broken = report("x", false, None, 2, 0);
        broken.error = Some("line one\nline | two".into());
        let t = table(&[report("a", true, Some(1_500), 1, 4), broken], Some(0));
        assert!(t.contains("| **winner** | a | `a` | passed | 1 | $0.0015 | 4 | 1 |"), "{t}");
        assert!(t.contains("error: line one line   two"), "{t}");
        assert_eq!(t.lines().count(), 4);
    }
}
