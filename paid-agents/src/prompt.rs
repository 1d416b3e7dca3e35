//! Prompt rendering: minijinja templates stored as data, and the
//! instruction-file writer.
//!
//! The task prompt itself (issue text plus verify feedback) is rendered by
//! the engine ([`paid_core::engine::prompt`]) and reaches agents as
//! [`AgentContext::prompt`](paid_core::AgentContext::prompt). This module
//! renders what surrounds it: the instruction file a CLI reads from the
//! worktree (`CLAUDE.md`, `AGENTS.md`, ...) and the API-mode agent's system
//! prompt. Both are plain strings in [`PromptTemplates`], so they can be
//! loaded from configuration, versioned and evolved like any prompt.

use minijinja::{Environment, UndefinedBehavior};
use paid_core::ExecRequest;
use paid_core::engine::SandboxSession;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::sandbox_io::{EnvPayload, SCRATCH, check, shell_quote};

/// The built-in instruction-file template. Variables: `agent` (the kind),
/// `repo` (`owner/name`), `verify` (the project's verify commands),
/// `iteration`.
pub const DEFAULT_INSTRUCTIONS: &str = "\
# Notes for this Paid run

You are {{ agent }}, working non-interactively in a sandbox on a checkout of {{ repo }}.
Nobody will answer questions: decide, act, and finish.

- Work only inside this checkout. The network reaches nothing but the model API.
- Make the smallest change that resolves the task, in the style of the code around it.
- Do not commit, push or create branches: Paid commits and opens the pull request.
- Leave this file as it is; Paid removes these notes after the run.
{%- if verify %}
- Before you finish, run the project's checks and make them pass:
{%- for cmd in verify %}
  - `{{ cmd }}`
{%- endfor %}
{%- endif %}
- End with a short summary of what you changed and why.
";

/// The built-in system prompt of the API-mode agent. Variables: `workdir`,
/// `verify`, `max_turns`.
pub const DEFAULT_API_SYSTEM: &str = "\
You are a coding agent working in the git checkout at {{ workdir }}, inside a sandbox.
Use the tools to list, read, search and edit files and to run commands. Paths are
relative to the checkout; nothing outside it can be read or written.

- Look before you edit: read the relevant files and run the failing checks.
- For small changes use `edit`: `old_string` must match the file exactly once,
  whitespace included. Use `write_file` for new files or complete rewrites.
- Do not commit; Paid commits for you.
{%- if verify %}
- The project's checks are: {% for cmd in verify %}`{{ cmd }}`{% if not loop.last %}, {% endif %}{% endfor %}. Run them before you finish.
{%- endif %}
- You have at most {{ max_turns }} turns. When the task is done, answer without calling
  a tool, with a short summary of what you changed.
";

/// The templates Paid renders around the task prompt, as data.
///
/// ```
/// use paid_agents::{InstructionVars, PromptTemplates};
///
/// let templates = PromptTemplates::default();
/// let text = templates
///     .render_instructions(&InstructionVars {
///         agent: "claude-code",
///         repo: "acme/widgets",
///         verify: &["cargo test".to_string()],
///         iteration: 1,
///     })
///     .unwrap();
/// assert!(text.contains("`cargo test`"));
///
/// // Templates are data: a deployment can load its own.
/// let custom: PromptTemplates = serde_json::from_str(r#"{ "instructions": "Be brief, {{ agent }}." }"#).unwrap();
/// assert_eq!(
///     custom.render_instructions(&InstructionVars { agent: "aider", repo: "a/b", verify: &[], iteration: 1 }).unwrap(),
///     "Be brief, aider."
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptTemplates {
    /// The instruction file a CLI reads. Default [`DEFAULT_INSTRUCTIONS`].
    pub instructions: String,
    /// The API-mode agent's system prompt. Default [`DEFAULT_API_SYSTEM`].
    pub api_system: String,
}

impl Default for PromptTemplates {
    fn default() -> Self {
        Self { instructions: DEFAULT_INSTRUCTIONS.into(), api_system: DEFAULT_API_SYSTEM.into() }
    }
}

/// The variables of [`PromptTemplates::instructions`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct InstructionVars<'a> {
    /// The agent kind.
    pub agent: &'a str,
    /// The repository, `owner/name`.
    pub repo: &'a str,
    /// The project's verify commands.
    pub verify: &'a [String],
    /// Iteration number, from 1.
    pub iteration: u32,
}

/// The variables of [`PromptTemplates::api_system`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ApiSystemVars<'a> {
    /// Where the worktree is mounted in the sandbox.
    pub workdir: &'a str,
    /// The project's verify commands.
    pub verify: &'a [String],
    /// The turn limit.
    pub max_turns: u32,
}

impl PromptTemplates {
    /// Renders the instruction file.
    pub fn render_instructions(&self, vars: &InstructionVars<'_>) -> Result<String, Error> {
        render("instructions", &self.instructions, vars)
    }

    /// Renders the API-mode system prompt.
    pub fn render_api_system(&self, vars: &ApiSystemVars<'_>) -> Result<String, Error> {
        render("api_system", &self.api_system, vars)
    }

    /// Checks that both templates parse.
    pub fn validate(&self) -> Result<(), Error> {
        compile_check("instructions", &self.instructions)?;
        compile_check("api_system", &self.api_system)
    }
}

/// A minijinja environment that refuses undefined variables, with the
/// filter `sh` (quotes a value for a POSIX shell).
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("sh", |value: String| shell_quote(&value));
    env
}

/// Renders `source` with `ctx`, naming the template in errors.
pub(crate) fn render(name: &str, source: &str, ctx: impl Serialize) -> Result<String, Error> {
    environment()
        .render_str(source, ctx)
        .map_err(|e| Error::Template { name: name.to_string(), message: format!("{e:#}") })
}

/// Parses `source` without rendering it.
pub(crate) fn compile_check(name: &str, source: &str) -> Result<(), Error> {
    environment()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|e| Error::Template { name: name.to_string(), message: format!("{e:#}") })
}

/// An instruction file Paid wrote into the worktree for one CLI run.
///
/// [`install`](InstructionFile::install) writes it (after any content the
/// repository already has in that file, which is kept aside), and
/// [`restore`](InstructionFile::restore) puts the worktree back as it was,
/// so the notes never reach the commit. If the agent changed the file
/// itself, restore leaves its version. Content travels by environment
/// variable, as the sandbox exec has no stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionFile {
    name: String,
}

impl InstructionFile {
    /// Writes `content` to `name` (a file name in the worktree root, such as
    /// `CLAUDE.md`). Returns `None`, writing nothing, when the worktree has
    /// something other than a regular file under that name (a symlink, a
    /// directory).
    pub async fn install(
        session: &SandboxSession,
        cancel: &CancellationToken,
        name: &str,
        content: &str,
    ) -> paid_core::Result<Option<Self>> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::Config {
                field: "instruction_file",
                message: format!("{name:?} must be a plain file name in the worktree root"),
            }
            .into());
        }
        let payload = EnvPayload::new("PAID_DATA", content, "the instruction file")?;
        let script = format!(
            r#"f="$PAID_FILE"; s={SCRATCH}/instructions; mkdir -p "$s"; rm -f "$s/orig" "$s/written"
if [ -L "$f" ] || {{ [ -e "$f" ] && [ ! -f "$f" ]; }}; then echo skipped; exit 0; fi
if [ -f "$f" ]; then cp "$f" "$s/orig" && {{ cat "$s/orig"; printf '\n\n'; printf '%s' {args}; }} > "$s/written"
else printf '%s' {args} > "$s/written"; fi && cat "$s/written" > "$f" && echo installed"#,
            args = payload.printf_args
        );
        let mut req = ExecRequest::shell(script).with_cancel(cancel.clone());
        req.env = payload.env;
        req.env.insert("PAID_FILE".into(), name.to_string());
        let out = session.exec(req).await?;
        check(&out, name)?;
        Ok(out.stdout.contains("installed").then(|| Self { name: name.to_string() }))
    }

    /// The file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Puts the worktree back: the original content, or no file.
    pub async fn restore(&self, session: &SandboxSession, cancel: &CancellationToken) -> paid_core::Result<()> {
        let script = format!(
            r#"f="$PAID_FILE"; s={SCRATCH}/instructions; [ -f "$s/written" ] || exit 0
if cmp -s "$f" "$s/written"; then if [ -f "$s/orig" ]; then cat "$s/orig" > "$f"; else rm -f "$f"; fi
else echo "paid: $f was changed during the run; leaving it as it is" >&2; fi
rm -f "$s/orig" "$s/written""#
        );
        let mut req = ExecRequest::shell(script).with_cancel(cancel.clone());
        req.env.insert("PAID_FILE".into(), self.name.clone());
        let out = session.exec(req).await?;
        check(&out, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_templates_render_with_and_without_verify_commands() {
        let t = PromptTemplates::default();
        t.validate().unwrap();
        let verify = vec!["sh test.sh".to_string(), "cargo clippy".to_string()];
        let text = t
            .render_instructions(&InstructionVars { agent: "codex", repo: "acme/calc", verify: &verify, iteration: 2 })
            .unwrap();
        assert!(text.contains("You are codex"), "{text}");
        assert!(text.contains("  - `sh test.sh`\n  - `cargo clippy`"), "{text}");
        let none = t
            .render_instructions(&InstructionVars { agent: "codex", repo: "acme/calc", verify: &[], iteration: 1 })
            .unwrap();
        assert!(!none.contains("checks"), "{none}");
        let system =
            t.render_api_system(&ApiSystemVars { workdir: "/workspace", verify: &verify, max_turns: 9 }).unwrap();
        assert!(system.contains("`sh test.sh`, `cargo clippy`"), "{system}");
        assert!(system.contains("at most 9 turns"), "{system}");
    }

    #[test]
    fn undefined_variables_and_bad_syntax_are_errors_naming_the_template() {
        let t = PromptTemplates { instructions: "{{ nope }}".into(), ..PromptTemplates::default() };
        let err =
            t.render_instructions(&InstructionVars { agent: "a", repo: "b", verify: &[], iteration: 1 }).unwrap_err();
        assert!(err.to_string().starts_with("template instructions does not render"), "{err}");
        let bad = PromptTemplates { api_system: "{% if %}".into(), ..PromptTemplates::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("api_system"));
    }
}
