//! Planning runs (`paid-plan`): a model splits a feature issue into
//! sub-issues with acceptance criteria, which are created on the forge under
//! the parent and labeled for execution.
//!
//! The whole step is one journaled side effect. Each sub-issue carries the
//! idempotency key `{run_id}:{index}`, so a run resumed after a crash finds
//! the sub-issues it already created instead of creating them again.

use minijinja::{Environment, context};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::Driver;
use super::held::Drive;
use super::journal::{Journal, OutputKind, Retry, StepOutput};
use super::steps::comment_marker;
use crate::engine::EngineEvent;
use crate::engine::templates::{self, PlannedLink};
use crate::{
    ChatRequest, Error, Message, Result, Run, RunState, SubIssueLink, SubIssueRequest, TrackedIssue, UsageRecord,
};

/// The label that asks for a plan instead of a build.
pub(crate) const PLAN_LABEL: &str = "paid-plan";
/// The label sub-issues get when the project names no other build trigger.
const BUILD_LABEL: &str = "paid-build";
/// At most this many sub-issues per plan.
const MAX_SUB_ISSUES: usize = 10;

/// The planning prompt. Variables: `issue` (number, title, body; trusted
/// text only) and `max` (the most sub-issues allowed).
pub const PLAN_TEMPLATE: &str = "\
You are planning work on a software repository. Split the feature below into
between 1 and {{ max }} small, independently implementable sub-issues.

Feature #{{ issue.number }}: {{ issue.title }}

{{ issue.body }}

Answer with JSON only, in exactly this shape:
{\"sub_issues\": [{\"title\": \"...\", \"body\": \"...\", \"acceptance_criteria\": [\"...\"]}]}
";

/// One sub-issue a plan proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedIssue {
    /// Title (non-empty).
    pub title: String,
    /// What to do.
    #[serde(default)]
    pub body: String,
    /// How to tell it is done.
    #[serde(default)]
    pub acceptance_criteria: Vec<String>,
}

impl PlannedIssue {
    /// The sub-issue's title and body (the description, its acceptance
    /// criteria as a checklist, and a link back to the parent), neutralized:
    /// Paid posts them as its own.
    fn render(&self, parent: u64) -> Result<(String, String)> {
        templates::sub_issue(&self.title, &self.body, &self.acceptance_criteria, parent)
    }
}

#[derive(Debug, Deserialize)]
struct PlanAnswer {
    sub_issues: Vec<PlannedIssue>,
}

/// A sub-issue the planning step created (or found again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CreatedSubIssue {
    pub title: String,
    pub number: u64,
    pub url: String,
    pub link: SubIssueLink,
}

/// The planning step's journal output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PlanOut {
    pub sub_issues: Vec<CreatedSubIssue>,
}

impl StepOutput for PlanOut {
    const KIND: OutputKind = OutputKind::Plan;
}

/// Renders the planning prompt. Refuses issues whose author is not trusted.
pub(super) fn render_plan_prompt(issue: &TrackedIssue) -> Result<String> {
    if !issue.trusted {
        return Err(Error::Untrusted { issue: issue.number, author: issue.author.clone(), allowed: Vec::new() });
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let err = |e: minijinja::Error| Error::InvalidInput { what: "plan template".into(), message: e.to_string() };
    env.add_template("plan", PLAN_TEMPLATE).map_err(err)?;
    let tmpl = env.get_template("plan").map_err(err)?;
    tmpl.render(context! {
        issue => context! { number => issue.number, title => &issue.title, body => &issue.body },
        max => MAX_SUB_ISSUES,
    })
    .map_err(err)
}

/// Parses and validates a model's plan: JSON (optionally in a code fence or
/// surrounded by prose) with 1 to 10 sub-issues, each with a title.
pub(super) fn parse_plan(text: &str) -> Result<Vec<PlannedIssue>> {
    let invalid = |message: String| Error::InvalidInput { what: "plan".into(), message };
    let json = match (text.find('{'), text.rfind('}')) {
        (Some(start), Some(end)) if start < end => &text[start..=end],
        _ => return Err(invalid(format!("the planner's answer holds no JSON object: {:?}", head(text)))),
    };
    let answer: PlanAnswer = serde_json::from_str(json)
        .map_err(|e| invalid(format!("the planner's answer is not {{\"sub_issues\": [...]}}: {e}")))?;
    let items = answer.sub_issues;
    if items.is_empty() || items.len() > MAX_SUB_ISSUES {
        return Err(invalid(format!(
            "a plan needs 1 to {MAX_SUB_ISSUES} sub-issues; the planner proposed {}",
            items.len()
        )));
    }
    if let Some(i) = items.iter().position(|p| p.title.trim().is_empty()) {
        return Err(invalid(format!("sub-issue {} of the plan has an empty title", i + 1)));
    }
    Ok(items.into_iter().map(|p| PlannedIssue { title: p.title.trim().chars().take(255).collect(), ..p }).collect())
}

fn head(s: &str) -> String {
    s.chars().take(200).collect()
}

impl Driver {
    /// `planning`: asks the planner for sub-issues and creates them under
    /// the run's issue, labeled for execution.
    pub(super) async fn plan(&self, d: &Drive) -> Result<RunState> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        let planner = self.planner.clone().ok_or_else(|| Error::InvalidInput {
            what: "engine.planner".into(),
            message: format!(
                "run {} plans issue #{} ({PLAN_LABEL}) but no planner model is configured; \
                 call EngineBuilder::planner(..)",
                run.id, run.issue_number
            ),
        })?;
        let prompt = render_plan_prompt(d.issue().await?)?;
        let model = run.model.clone().unwrap_or_else(|| "default".into());
        let label = project
            .trigger_labels
            .iter()
            .find(|l| l.as_str() != PLAN_LABEL)
            .cloned()
            .unwrap_or_else(|| BUILD_LABEL.to_string());
        let t = &self.config.timeouts;
        let timeout = t.agent + t.issue_update * (MAX_SUB_ISSUES as u32 + 1);
        let key = format!("plan:{}", run.id);
        let (planner, prompt, model, label) = (&planner, &prompt, &model, &label);
        let out: PlanOut = self
            .journaled(run, journal, Some(&key), timeout, Retry::Transient, || async move {
                let req = ChatRequest {
                    model: model.clone(),
                    system: Some("You split software features into sub-issues. Answer with JSON only.".into()),
                    messages: vec![Message::user(prompt.clone())],
                    tools: Vec::new(),
                    max_tokens: 4_096,
                };
                let started = std::time::Instant::now();
                let answer = planner.complete(&req).await?;
                self.store
                    .record_usage(&UsageRecord {
                        run_id: run.id,
                        provider: planner.name().to_string(),
                        model: model.clone(),
                        usage: answer.usage,
                        cost_micros: None,
                        latency_ms: started.elapsed().as_millis() as u64,
                        status: "ok".into(),
                        at: self.clock.now(),
                    })
                    .await?;
                d.usage_changed();
                let items = parse_plan(&answer.content)?;
                let mut created = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let (title, body) = item.render(run.issue_number)?;
                    let sub = self
                        .forge
                        .create_sub_issue(&SubIssueRequest {
                            repo: project.repo.clone(),
                            parent: run.issue_number,
                            title,
                            body,
                            labels: vec![label.clone()],
                            key: format!("{}:{i}", run.id),
                        })
                        .await?;
                    info!(run_id = %run.id, parent = run.issue_number, sub_issue = sub.number, created = sub.created, "sub-issue");
                    created.push(CreatedSubIssue {
                        title: item.title.clone(),
                        number: sub.number,
                        url: sub.url,
                        link: sub.link,
                    });
                }
                Ok(PlanOut { sub_issues: created })
            })
            .await?;
        self.events.emit(EngineEvent::Note {
            run_id: run.id,
            message: format!("planned {} sub-issues", out.sub_issues.len()),
        });
        Ok(RunState::Reporting)
    }

    /// The plan run's comment on the parent issue: the sub-issues it made
    /// (from its journal).
    pub(super) fn plan_comment(&self, run: &Run, journal: &Journal) -> Result<String> {
        let subs = journal.latest::<PlanOut>().map(|p| p.sub_issues).unwrap_or_default();
        let links: Vec<_> = subs.iter().map(|s| PlannedLink { number: s.number, title: &s.title }).collect();
        templates::plan_comment(
            run.issue_number,
            &links,
            run.id,
            run.model.as_deref().unwrap_or("-"),
            &comment_marker(run.id),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(title: &str) -> String {
        format!(r#"{{"title": "{title}", "body": "b", "acceptance_criteria": ["c"]}}"#)
    }

    #[test]
    fn a_fenced_plan_is_parsed() {
        let text = format!("Sure:\n```json\n{{\"sub_issues\": [{}, {}]}}\n```", item("One"), item("Two"));
        let plan = parse_plan(&text).unwrap();
        assert_eq!(plan.iter().map(|p| p.title.as_str()).collect::<Vec<_>>(), ["One", "Two"]);
        assert_eq!(plan[0].acceptance_criteria, ["c"]);
        let (title, body) = plan[0].render(7).unwrap();
        assert_eq!(title, "One");
        assert_eq!(body, "b\n\n## Acceptance criteria\n- [ ] c\n\n\nPart of #7.");
        let bare = PlannedIssue { title: "T".into(), body: "  do it  ".into(), acceptance_criteria: Vec::new() };
        assert_eq!(bare.render(7).unwrap().1, "do it\n\nPart of #7.");
    }

    #[test]
    fn a_models_sub_issues_cannot_mention_close_or_link() {
        let z = crate::policy::text::ZERO_WIDTH_SPACE;
        let item = PlannedIssue {
            title: "Ping @octocat".into(),
            body: "Fixes #3 per https://evil.example/x".into(),
            acceptance_criteria: vec![" ask @mallory ".into()],
        };
        let (title, body) = item.render(7).unwrap();
        assert_eq!(title, format!("Ping @{z}octocat"));
        assert_eq!(
            body,
            format!(
                "Fixes{z} #3 per https:/{z}/evil.example/x\n\n## Acceptance criteria\n- [ ] ask @{z}mallory\n\n\nPart of #7."
            )
        );
    }

    #[test]
    fn bad_plans_are_refused() {
        let many = (0..11).map(|i| item(&format!("T{i}"))).collect::<Vec<_>>().join(",");
        for text in [
            "no json here".to_string(),
            r#"{"sub_issues": []}"#.to_string(),
            format!(r#"{{"sub_issues": [{many}]}}"#),
            format!(r#"{{"sub_issues": [{}, {}]}}"#, item("ok"), item("  ")),
            r#"{"tasks": []}"#.to_string(),
        ] {
            let err = parse_plan(&text).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{text}: {err}");
        }
    }
}
