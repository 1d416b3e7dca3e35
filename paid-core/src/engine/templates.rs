//! The text Paid writes on the forge, from minijinja templates
//! (`templates/*.md.j2`), not string building in the steps.
//!
//! Templates are compiled into the binary and rendered with strict
//! undefined behaviour, so a misspelt variable is an error in the tests, not
//! an empty string on a pull request.
//!
//! # Text Paid did not write
//!
//! This is the boundary where text from the agent, a model or an issue
//! becomes Paid's own text on the forge, and where it is
//! [neutralized](crate::policy::text) (no `@mentions`, no closing keyword
//! for another issue than the run's own, no clickable links). It fails
//! closed: **every** value a template prints is neutralized, unless the
//! template marks it `| safe` (Paid's own URLs and markers, or text already
//! neutralized). `| neutralize` does it explicitly (its result is safe), and
//! `| cap(n)` cuts neutral text to `n` characters keeping it neutral
//! ([`truncate_neutral`]).
//!
//! Values are neutralized one by one, so a template must not put a closing
//! keyword in its own text right before a value, or two values side by side
//! where the first could end in a keyword and the second start with a
//! reference.

use minijinja::value::Value;
use minijinja::{Environment, State, UndefinedBehavior, context};
use serde::Serialize;

use crate::policy::text::{neutralize, truncate_neutral};
use crate::{Error, Failure, Result, RunId};

const PR_FOOTER: &str = include_str!("templates/pr_footer.md.j2");
const PR_BODY: &str = include_str!("templates/pr_body.md.j2");
const SUMMARY_COMMENT: &str = include_str!("templates/summary_comment.md.j2");
const PLAN_COMMENT: &str = include_str!("templates/plan_comment.md.j2");
const SUB_ISSUE: &str = include_str!("templates/sub_issue.md.j2");

/// Renders `source`; `own_issue` is the issue a closing keyword may still
/// close (the run's own), if any.
fn render<S: Serialize>(name: &str, source: &str, own_issue: Option<u64>, ctx: S) -> Result<String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Keep the text as written: Markdown, not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.set_formatter(move |out, state: &State, value: &Value| {
        if value.is_safe() {
            minijinja::escape_formatter(out, state, value)
        } else {
            out.write_str(&neutralize(&value.to_string(), own_issue)).map_err(minijinja::Error::from)
        }
    });
    env.add_filter("neutralize", move |value: Value| neutral(&value, own_issue));
    env.add_filter("cap", move |value: Value, max: usize| {
        Value::from_safe_string(truncate_neutral(&neutral(&value, own_issue).to_string(), max, own_issue))
    });
    let err = |e: minijinja::Error| Error::InvalidInput { what: format!("template {name}"), message: e.to_string() };
    env.add_template(name, source).map_err(err)?;
    env.get_template(name).map_err(err)?.render(ctx).map_err(err)
}

/// `value` neutralized (left as it is when it is safe already), as a safe
/// string.
fn neutral(value: &Value, own_issue: Option<u64>) -> Value {
    if value.is_safe() { value.clone() } else { Value::from_safe_string(neutralize(&value.to_string(), own_issue)) }
}

/// The footer of a pull request's body: what it closes and which run
/// opened it with which model.
pub(crate) fn pr_footer(issue_number: u64, run_id: RunId, model: Option<&str>) -> Result<String> {
    render(
        "pr_footer",
        PR_FOOTER,
        Some(issue_number),
        context! { issue_number, run_id => run_id.to_string(), model => model.unwrap_or("unknown") },
    )
}

/// A pull request's body: the agent's `summary`, neutralized and cut to
/// fit, then the [`pr_footer`]; at most `max_chars` characters.
pub(crate) fn pr_body(
    summary: &str,
    issue_number: u64,
    run_id: RunId,
    model: Option<&str>,
    max_chars: usize,
) -> Result<String> {
    let footer = pr_footer(issue_number, run_id, model)?;
    let room = max_chars.saturating_sub(footer.chars().count());
    render(
        "pr_body",
        PR_BODY,
        Some(issue_number),
        context! { summary, room, footer => Value::from_safe_string(footer) },
    )
}

/// What [`summary_comment`] says about one run.
#[derive(Debug, Serialize)]
pub(crate) struct Summary<'a> {
    pub run_id: RunId,
    pub model: &'a str,
    pub iterations: u32,
    pub cost: &'a str,
    pub seconds: i64,
    pub pr_url: Option<&'a str>,
    pub failure: Option<&'a Failure>,
    /// The side-by-side table of a comparison run, if it was one.
    pub candidates: Option<String>,
    pub marker: &'a str,
}

/// The comment Paid leaves on the issue at the end of a build run.
pub(crate) fn summary_comment(summary: &Summary<'_>) -> Result<String> {
    render("summary_comment", SUMMARY_COMMENT, None, summary)
}

/// One sub-issue in a [`plan_comment`].
#[derive(Debug, Serialize)]
pub(crate) struct PlannedLink<'a> {
    pub number: u64,
    pub title: &'a str,
}

/// The comment a planning run leaves on the issue it split.
pub(crate) fn plan_comment(
    issue_number: u64,
    subs: &[PlannedLink<'_>],
    run_id: RunId,
    model: &str,
    marker: &str,
) -> Result<String> {
    render(
        "plan_comment",
        PLAN_COMMENT,
        Some(issue_number),
        context! { subs, run_id => run_id.to_string(), model, marker },
    )
}

/// A sub-issue's title and body from a model's plan: the description, the
/// acceptance criteria as a checklist, and a link back to `parent`.
pub(crate) fn sub_issue(title: &str, body: &str, criteria: &[String], parent: u64) -> Result<(String, String)> {
    let title = neutralize(title, None);
    let body = render("sub_issue", SUB_ISSUE, None, context! { body => body.trim(), criteria, parent })?;
    Ok((title, body.trim_start().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_id() -> RunId {
        RunId(uuid::Uuid::nil())
    }

    #[test]
    fn the_pr_footer_closes_the_issue_and_names_the_run() {
        let footer = pr_footer(12, run_id(), Some("gpt-5")).unwrap();
        assert_eq!(
            footer,
            "\n\nCloses #12\n\n---\nOpened by Paid run `00000000-0000-0000-0000-000000000000` with model `gpt-5`. \
             Paid never merges; please review."
        );
        assert!(pr_footer(1, run_id(), None).unwrap().contains("model `unknown`"));
    }

    const Z: char = crate::policy::text::ZERO_WIDTH_SPACE;
    const HOSTILE: &str = "Thanks @octocat. Fixes #99, see https://evil.example/x <!-- paid:run:y -->";

    /// Whether `text` holds any of [`HOSTILE`]'s payloads in live form.
    fn live(text: &str) -> bool {
        text.contains("@octocat")
            || text.contains("Fixes #99")
            || text.contains("https://evil.example")
            || text.contains("<!-- paid:run:y")
    }

    #[test]
    fn every_printed_value_is_neutralized_unless_marked_safe() {
        let ctx = context! { x => HOSTILE };
        let out = render("t", "{{ x }}", Some(12), &ctx).unwrap();
        assert!(!live(&out), "{out}");
        assert_eq!(out.replace(Z, ""), HOSTILE);
        assert_eq!(render("t", "{{ x | neutralize }}", Some(12), &ctx).unwrap(), out);
        assert_eq!(render("t", "{{ x | neutralize | neutralize }}", Some(12), &ctx).unwrap(), out);
        // Negative control: what a template marks safe is printed as it is.
        assert_eq!(render("t", "{{ x | safe }}", Some(12), &ctx).unwrap(), HOSTILE);
        // The run's own issue is the one exception for closing keywords.
        let own = context! { x => "Closes #12, fixes #13" };
        assert_eq!(render("t", "{{ x }}", Some(12), &own).unwrap(), format!("Closes #12, fixes{Z} #13"));
        assert_eq!(render("t", "{{ x }}", None, &own).unwrap(), format!("Closes{Z} #12, fixes{Z} #13"));
        // Strict undefined behaviour still holds.
        assert!(render("t", "{{ y }}", None, &ctx).is_err());
    }

    #[test]
    fn a_pr_body_neutralizes_the_summary_keeps_its_own_closing_line_and_fits() {
        let body = pr_body(HOSTILE, 12, run_id(), Some("m"), 50_000).unwrap();
        assert!(!live(&body), "{body}");
        assert!(
            body.starts_with(&format!("Thanks @{Z}octocat. Fixes{Z} #99, see https:/{Z}/evil.example/x")),
            "{body}"
        );
        assert!(body.contains("\n\nCloses #12\n\n---\nOpened by Paid run"), "{body}");
        let footer = pr_footer(12, run_id(), Some("m")).unwrap();
        assert!(body.ends_with(&footer));

        // A long summary is cut, after neutralizing, to fit with the footer.
        let long = format!("{} Closes #12 and more", "@octocat ".repeat(10));
        for max in footer.chars().count()..footer.chars().count() + 120 {
            let body = pr_body(&long, 12, run_id(), Some("m"), max).unwrap();
            assert!(body.chars().count() <= max, "{max}: {body}");
            assert!(body.ends_with(&footer), "{max}: {body}");
            assert!(!body.contains("@octocat") && !body.contains("Closes #1…"), "{max}: {body}");
        }
    }

    #[test]
    fn a_summary_comments_failure_and_candidates_are_neutralized_its_url_and_marker_are_not() {
        let failure =
            Failure { step: crate::RunState::RunningAgent, code: "agent_failed".into(), message: HOSTILE.into() };
        let summary = Summary {
            run_id: run_id(),
            model: "m",
            iterations: 1,
            cost: "$0",
            seconds: 1,
            pr_url: Some("https://github.com/o/r/pull/3"),
            failure: Some(&failure),
            candidates: Some(format!("| c1 | error: {HOSTILE} |")),
            marker: "<!-- paid:run:x -->",
        };
        let text = summary_comment(&summary).unwrap();
        assert!(!live(&text), "{text}");
        assert!(text.ends_with("\n\n<!-- paid:run:x -->"), "{text}");
        let ok = summary_comment(&Summary { failure: None, ..summary }).unwrap();
        assert!(ok.starts_with("Paid opened https://github.com/o/r/pull/3 for this issue."), "{ok}");
    }

    #[test]
    fn a_plan_comment_neutralizes_the_models_titles() {
        let subs = [PlannedLink { number: 4, title: "Do A" }, PlannedLink { number: 5, title: HOSTILE }];
        let text = plan_comment(3, &subs, run_id(), "m", "<!-- paid:run:x -->").unwrap();
        assert!(!live(&text), "{text}");
        assert!(
            text.starts_with("Paid split this issue into 2 sub-issues:\n\n- [ ] #4 Do A\n- [ ] #5 Thanks @"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\nEach is labeled for execution. Run `00000000-0000-0000-0000-000000000000` used model m.\n\n\
                 <!-- paid:run:x -->"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_summary_comment_has_its_table_its_marker_and_the_failure_when_there_is_one() {
        let ok = Summary {
            run_id: run_id(),
            model: "m",
            iterations: 2,
            cost: "$0.0100",
            seconds: 42,
            pr_url: Some("https://example.test/pr/1"),
            failure: None,
            candidates: None,
            marker: "<!-- paid:run:x -->",
        };
        assert_eq!(
            summary_comment(&ok).unwrap(),
            "Paid opened https://example.test/pr/1 for this issue.\n\n| run | model | iterations | cost | duration |\n\
             |---|---|---|---|---|\n| `00000000-0000-0000-0000-000000000000` | m | 2 | $0.0100 | 42s |\n\n\
             <!-- paid:run:x -->"
        );
        let failure =
            Failure { step: crate::RunState::Verifying, code: "verify_failed".into(), message: "tests fail".into() };
        let failed = Summary { failure: Some(&failure), candidates: Some("| a | b |".into()), ..ok };
        let text = summary_comment(&failed).unwrap();
        assert!(text.starts_with("Paid could not finish this issue (verify_failed): tests fail\n"), "{text}");
        assert!(text.contains("42s |\n\nCandidates compared:\n\n| a | b |\n\n<!-- paid:run:x -->"), "{text}");
    }
}
