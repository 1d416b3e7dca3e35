//! The task prompt, rendered with minijinja from trusted issue text only.

use minijinja::{Environment, context};

use crate::{Error, Result, TrackedIssue};

/// The built-in task template. Variables: `issue` (number, title, body),
/// `feedback` (verify failures of the previous iteration, or none).
pub const DEFAULT_TEMPLATE: &str = "\
You are working in a git repository checked out at the current directory.
Resolve issue #{{ issue.number }}: {{ issue.title }}

{{ issue.body }}
{% if feedback %}
The previous attempt did not pass verification. Fix these failures:

{{ feedback }}
{% endif %}
Make the smallest change that resolves the issue. Do not commit; Paid commits for you.
";

/// Renders `template` for `issue`. Refuses issues whose author is not trusted:
/// their text never reaches a prompt.
pub fn render(template: &str, issue: &TrackedIssue, feedback: Option<&str>) -> Result<String> {
    if !issue.trusted {
        return Err(Error::Untrusted { issue: issue.number, author: issue.author.clone(), allowed: Vec::new() });
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let err = |e: minijinja::Error| Error::InvalidInput { what: "prompt template".into(), message: e.to_string() };
    env.add_template("task", template).map_err(err)?;
    let tmpl = env.get_template("task").map_err(err)?;
    tmpl.render(context! {
        issue => context! { number => issue.number, title => &issue.title, body => &issue.body },
        feedback => feedback,
    })
    .map_err(err)
}

/// Renders a learning [`PromptVersion`](crate::learning::prompts::PromptVersion)
/// for `issue` with the style guides. Refuses untrusted issues like
/// [`render`].
pub fn render_version(
    version: &crate::learning::prompts::PromptVersion,
    style: &crate::learning::prompts::StyleGuides,
    issue: &TrackedIssue,
    feedback: Option<&str>,
) -> Result<String> {
    if !issue.trusted {
        return Err(Error::Untrusted { issue: issue.number, author: issue.author.clone(), allowed: Vec::new() });
    }
    let vars = serde_json::json!({
        "issue": { "number": issue.number, "title": issue.title, "body": issue.body },
        "feedback": feedback,
    });
    version.render(&vars, style)
}
