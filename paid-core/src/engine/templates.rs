//! The text Paid writes on the forge, from minijinja templates
//! (`templates/*.md.j2`), not string building in the steps.
//!
//! Templates are compiled into the binary and rendered with strict
//! undefined behaviour, so a misspelt variable is an error in the tests, not
//! an empty string on a pull request.

use minijinja::{Environment, UndefinedBehavior, context};
use serde::Serialize;

use crate::{Error, Failure, Result, RunId};

const PR_FOOTER: &str = include_str!("templates/pr_footer.md.j2");
const SUMMARY_COMMENT: &str = include_str!("templates/summary_comment.md.j2");

fn render<S: Serialize>(name: &str, source: &str, ctx: S) -> Result<String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Keep the text as written: Markdown, not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(true);
    let err = |e: minijinja::Error| Error::InvalidInput { what: format!("template {name}"), message: e.to_string() };
    env.add_template(name, source).map_err(err)?;
    env.get_template(name).map_err(err)?.render(ctx).map_err(err)
}

/// The footer of a pull request's body: what it closes and which run
/// opened it with which model.
pub(crate) fn pr_footer(issue_number: u64, run_id: RunId, model: Option<&str>) -> Result<String> {
    render(
        "pr_footer",
        PR_FOOTER,
        context! { issue_number, run_id => run_id.to_string(), model => model.unwrap_or("unknown") },
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
    render("summary_comment", SUMMARY_COMMENT, summary)
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
