//! The API-mode agent's tools, executed inside the sandbox.
//!
//! Every tool is one or two `sh -c` execs through the run's
//! [`SandboxSession`], so the sandbox's isolation applies and the run log
//! shows what ran. Paths go through [`paths`](super::paths) on the host and
//! again inside the sandbox. Text travels by environment variable (no
//! stdin). A tool that fails answers the model with `error: …` and the
//! agent goes on; only cancellation and infrastructure failures end it.

use std::time::Duration;

use paid_core::engine::{ExecOutput, SandboxSession};
use paid_core::{Error as CoreError, ExecExit, ExecRequest, ToolCall, ToolSpec};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::paths::{self, OUTSIDE, SHELL_CONFINE};
use crate::sandbox_io::{EXEC_BYTES, EnvPayload, SCRATCH, write_text};

/// Lines `read_file` returns when not told otherwise.
const READ_LINES: u64 = 2_000;
/// Most lines `grep` and `list` return.
const LIST_LINES: usize = 500;
/// Longest `run` a model may ask for.
const RUN_LIMIT: Duration = Duration::from_secs(1_800);
/// Marks a `run` that changed files (on stderr).
const CHANGED: &str = "@@paid:changed@@";

/// The edit program: exact, unique match of `old` in the file.
const EDIT_PY: &str = r#"import sys
path, old_f, new_f, shown = sys.argv[1:5]
def fail(code, msg):
    print(msg, file=sys.stderr); sys.exit(code)
old = open(old_f, encoding="utf-8", newline="").read()
new = open(new_f, encoding="utf-8", newline="").read()
if not old:
    fail(5, "old_string is empty; use write_file to create or replace a whole file")
try:
    text = open(path, encoding="utf-8", newline="").read()
except FileNotFoundError:
    fail(4, f"{shown} does not exist")
except IsADirectoryError:
    fail(4, f"{shown} is a directory")
except UnicodeDecodeError:
    fail(4, f"{shown} is not UTF-8 text")
n = text.count(old)
if n == 0:
    fail(5, f"old_string was not found in {shown}; it must match the file exactly, whitespace and indentation included (read the file again)")
if n > 1:
    fail(5, f"old_string matches {n} places in {shown}; include more surrounding lines so that it matches exactly one")
if old == new:
    print("unchanged")
else:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text.replace(old, new, 1))
    print("edited")
"#;

/// The tools offered to the model.
pub(crate) fn specs() -> Vec<ToolSpec> {
    let spec = |name: &str, description: &str, parameters: serde_json::Value| ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters,
    };
    vec![
        spec(
            "read_file",
            "Read a text file of the repository. Returns its lines (by default the first 2000); use offset and limit for more.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "Path relative to the repository root."},
                "offset": {"type": "integer", "minimum": 1, "description": "First line to return, from 1."},
                "limit": {"type": "integer", "minimum": 1, "description": "How many lines to return."}
            }, "required": ["path"]}),
        ),
        spec(
            "write_file",
            "Create a file or replace its whole content. Parent directories are created.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "Path relative to the repository root."},
                "content": {"type": "string", "description": "The complete new content."}
            }, "required": ["path", "content"]}),
        ),
        spec(
            "edit",
            "Replace one exact occurrence of old_string with new_string in a file. old_string must match exactly once, whitespace included.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "old_string": {"type": "string", "description": "The exact text to replace; it must occur exactly once."},
                "new_string": {"type": "string", "description": "The replacement."}
            }, "required": ["path", "old_string", "new_string"]}),
        ),
        spec(
            "list",
            "List files and directories (directories end in /), two levels deep by default.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "Directory relative to the repository root; default the root."},
                "depth": {"type": "integer", "minimum": 1, "maximum": 6}
            }}),
        ),
        spec(
            "grep",
            "Search file contents with an extended regular expression. Returns file:line:text matches.",
            json!({"type": "object", "properties": {
                "pattern": {"type": "string"},
                "path": {"type": "string", "description": "File or directory to search; default the root."},
                "glob": {"type": "string", "description": "Only files whose name matches, e.g. *.rs"}
            }, "required": ["pattern"]}),
        ),
        spec(
            "run",
            "Run a shell command in the repository root (tests, builds, linters). Returns its exit code and output.",
            json!({"type": "object", "properties": {
                "command": {"type": "string"},
                "timeout_secs": {"type": "integer", "minimum": 1, "maximum": 1800}
            }, "required": ["command"]}),
        ),
    ]
}

/// What a tool answered, and whether it changed the worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolResult {
    pub text: String,
    pub changed: bool,
}

impl ToolResult {
    fn ok(text: impl Into<String>) -> Self {
        Self { text: text.into(), changed: false }
    }

    fn changed(text: impl Into<String>) -> Self {
        Self { text: text.into(), changed: true }
    }

    fn error(message: impl AsRef<str>) -> Self {
        Self { text: format!("error: {}", message.as_ref().trim()), changed: false }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    path: String,
    offset: Option<u64>,
    limit: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditArgs {
    path: String,
    old_string: String,
    new_string: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    path: Option<String>,
    depth: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrepArgs {
    pattern: String,
    path: Option<String>,
    glob: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunArgs {
    command: String,
    timeout_secs: Option<u64>,
}

/// Runs the tools of one agent iteration in one sandbox.
pub(crate) struct Tools<'a> {
    pub session: &'a SandboxSession,
    pub cancel: &'a CancellationToken,
    /// Timeout of every tool but `run` (which asks for its own).
    pub timeout: Duration,
    /// Most characters of output a tool returns.
    pub max_output: usize,
}

impl Tools<'_> {
    /// Executes `call`. Tool failures are answers; `Err` is for cancellation
    /// and for a sandbox that cannot run commands at all.
    pub async fn execute(&self, call: &ToolCall) -> paid_core::Result<ToolResult> {
        let args = if call.arguments.is_null() { json!({}) } else { call.arguments.clone() };
        let parsed = |e: serde_json::Error| ToolResult::error(format!("invalid arguments for {}: {e}", call.name));
        match call.name.as_str() {
            "read_file" => match serde_json::from_value(args) {
                Ok(a) => self.read(a).await,
                Err(e) => Ok(parsed(e)),
            },
            "write_file" => match serde_json::from_value(args) {
                Ok(a) => self.write(a).await,
                Err(e) => Ok(parsed(e)),
            },
            "edit" => match serde_json::from_value(args) {
                Ok(a) => self.edit(a).await,
                Err(e) => Ok(parsed(e)),
            },
            "list" => match serde_json::from_value(args) {
                Ok(a) => self.list(a).await,
                Err(e) => Ok(parsed(e)),
            },
            "grep" => match serde_json::from_value(args) {
                Ok(a) => self.grep(a).await,
                Err(e) => Ok(parsed(e)),
            },
            "run" => match serde_json::from_value(args) {
                Ok(a) => self.run(a).await,
                Err(e) => Ok(parsed(e)),
            },
            other => Ok(ToolResult::error(format!(
                "there is no tool {other:?}; the tools are read_file, write_file, edit, list, grep and run"
            ))),
        }
    }

    fn mount(&self) -> &str {
        &self.session.handle().mount_at
    }

    /// A path-taking script: the confine functions, then `body`.
    fn request(&self, path: &str, body: &str, timeout: Duration) -> ExecRequest {
        let mut req =
            ExecRequest::shell(format!("{SHELL_CONFINE}{body}")).with_timeout(timeout).with_cancel(self.cancel.clone());
        req.env.insert("PAID_ROOT".into(), self.mount().to_string());
        req.env.insert("PAID_PATH".into(), path.to_string());
        req
    }

    async fn exec(&self, req: ExecRequest) -> paid_core::Result<ExecOutput> {
        let out = self.session.exec(req).await?;
        if out.exit == ExecExit::Cancelled && self.cancel.is_cancelled() {
            return Err(CoreError::Cancelled);
        }
        Ok(out)
    }

    /// The answer for a failed helper exec.
    fn failed(&self, out: &ExecOutput) -> ToolResult {
        let why = out.stderr.trim();
        match out.exit {
            ExecExit::TimedOut => ToolResult::error(format!("timed out after {}s", self.timeout.as_secs())),
            ExecExit::OutOfMemory => ToolResult::error("killed: out of memory"),
            ExecExit::Code(OUTSIDE) => ToolResult::error(format!("refused: {why}")),
            _ if why.is_empty() => ToolResult::error(format!("failed ({:?})", out.exit)),
            _ => ToolResult::error(why),
        }
    }

    fn head(&self, text: &str) -> String {
        if text.chars().count() <= self.max_output {
            return text.to_string();
        }
        let cut: String = text.chars().take(self.max_output).collect();
        format!("{cut}\n[… output cut at {} characters]", self.max_output)
    }

    fn tail(&self, text: &str) -> String {
        let count = text.chars().count();
        if count <= self.max_output {
            return text.to_string();
        }
        let kept: String = text.chars().skip(count - self.max_output).collect();
        format!("[… {} earlier characters cut]\n{kept}", count - self.max_output)
    }

    async fn read(&self, a: ReadArgs) -> paid_core::Result<ToolResult> {
        let path = match paths::confine(&a.path, self.mount()) {
            Ok(p) => p,
            Err(e) => return Ok(ToolResult::error(format!("refused: {e}"))),
        };
        let offset = a.offset.unwrap_or(1).max(1);
        let limit = a.limit.unwrap_or(READ_LINES).clamp(1, 100_000);
        let body = format!(
            r#"p=$(confine "$PAID_PATH") || exit $?
[ -f "$p" ] || {{ echo "$PAID_PATH is not a file (use list for directories)" >&2; exit 4; }}
if [ -s "$p" ] && ! grep -qI . "$p"; then echo "$PAID_PATH is a binary file" >&2; exit 4; fi
echo "lines=$(wc -l < "$p")" >&2
sed -n '{offset},{last}p' "$p""#,
            last = offset.saturating_add(limit - 1)
        );
        let out = self.exec(self.request(&path, &body, self.timeout)).await?;
        if !out.exit.success() {
            return Ok(self.failed(&out));
        }
        let total: u64 =
            out.stderr.lines().find_map(|l| l.strip_prefix("lines=")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
        let mut text = self.head(&out.stdout);
        let shown_to = offset.saturating_add(limit - 1).min(total);
        if offset > 1 || shown_to < total {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("[lines {offset}-{shown_to} of {total}; pass offset/limit to read more]"));
        }
        if text.is_empty() {
            text = format!("[{} is empty]", a.path);
        }
        Ok(ToolResult::ok(text))
    }

    /// Puts `texts` into scratch files `names` (under [`SCRATCH`]), then
    /// runs `script` (which refers to them) in the same exec when they fit
    /// in one, otherwise after writing them with separate execs.
    async fn staged(
        &self,
        path: &str,
        texts: &[(&str, &str)],
        script: &str,
        extra_env: &[(&str, &str)],
    ) -> paid_core::Result<Result<ExecOutput, ToolResult>> {
        let total: usize = texts.iter().map(|(_, t)| t.len()).sum();
        if texts.iter().any(|(_, t)| t.contains('\0')) {
            return Ok(Err(ToolResult::error("the text contains a NUL byte, which cannot be written")));
        }
        let mut prelude = format!("mkdir -p {SCRATCH}\n");
        let mut env = std::collections::BTreeMap::new();
        if total <= EXEC_BYTES {
            for (i, (name, text)) in texts.iter().enumerate() {
                let payload = EnvPayload::new(&format!("PAID_T{i}"), text, "tool text")?;
                prelude.push_str(&format!("printf '%s' {} > {SCRATCH}/{name}\n", payload.printf_args));
                env.extend(payload.env);
            }
        } else {
            for (name, text) in texts {
                write_text(self.session, self.cancel, &format!("{SCRATCH}/{name}"), text, "tool text").await?;
            }
        }
        let mut req = self.request(path, &format!("{prelude}{script}"), self.timeout);
        req.env.extend(env);
        req.env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Ok(Ok(self.exec(req).await?))
    }

    async fn write(&self, a: WriteArgs) -> paid_core::Result<ToolResult> {
        let path = match paths::confine(&a.path, self.mount()) {
            Ok(p) => p,
            Err(e) => return Ok(ToolResult::error(format!("refused: {e}"))),
        };
        let script = format!(
            r#"p=$(confine "$PAID_PATH") || exit $?
[ -d "$p" ] && {{ echo "$PAID_PATH is a directory" >&2; exit 4; }}
mkdir -p -- "$(dirname -- "$p")" || exit 4
if [ -f "$p" ] && cmp -s {SCRATCH}/write "$p"; then echo unchanged; else cat {SCRATCH}/write > "$p" && echo written; fi"#
        );
        let out = match self.staged(&path, &[("write", &a.content)], &script, &[]).await? {
            Ok(out) => out,
            Err(answer) => return Ok(answer),
        };
        if !out.exit.success() {
            return Ok(self.failed(&out));
        }
        let bytes = a.content.len();
        Ok(if out.stdout.contains("unchanged") {
            ToolResult::ok(format!("{} already has this content ({bytes} bytes); nothing changed", a.path))
        } else {
            ToolResult::changed(format!("wrote {bytes} bytes to {}", a.path))
        })
    }

    async fn edit(&self, a: EditArgs) -> paid_core::Result<ToolResult> {
        let path = match paths::confine(&a.path, self.mount()) {
            Ok(p) => p,
            Err(e) => return Ok(ToolResult::error(format!("refused: {e}"))),
        };
        let script = format!(
            r#"p=$(confine "$PAID_PATH") || exit $?
command -v python3 >/dev/null || {{ echo "edit needs python3 in the sandbox image" >&2; exit 4; }}
python3 -c "$PAID_EDIT_PY" "$p" {SCRATCH}/edit.old {SCRATCH}/edit.new "$PAID_PATH""#
        );
        let texts = [("edit.old", a.old_string.as_str()), ("edit.new", a.new_string.as_str())];
        let out = match self.staged(&path, &texts, &script, &[("PAID_EDIT_PY", EDIT_PY)]).await? {
            Ok(out) => out,
            Err(answer) => return Ok(answer),
        };
        if !out.exit.success() {
            return Ok(self.failed(&out));
        }
        Ok(if out.stdout.contains("unchanged") {
            ToolResult::ok("old_string and new_string are the same; nothing changed")
        } else {
            ToolResult::changed(format!("edited {}", a.path))
        })
    }

    async fn list(&self, a: ListArgs) -> paid_core::Result<ToolResult> {
        let shown = a.path.clone().unwrap_or_else(|| ".".into());
        let path = match paths::confine(&shown, self.mount()) {
            Ok(p) => p,
            Err(e) => return Ok(ToolResult::error(format!("refused: {e}"))),
        };
        let depth = a.depth.unwrap_or(2).clamp(1, 6);
        let body = format!(
            r#"p=$(confine "$PAID_PATH") || exit $?
[ -d "$p" ] || {{ echo "$PAID_PATH is not a directory" >&2; exit 4; }}
cd "$p" && find . -mindepth 1 -maxdepth {depth} -name .git -prune -o \( -type d -printf '%P/\n' -o -printf '%P\n' \) | sort | head -n {LIST_LINES}"#
        );
        let out = self.exec(self.request(&path, &body, self.timeout)).await?;
        if !out.exit.success() {
            return Ok(self.failed(&out));
        }
        let lines = out.stdout.lines().count();
        let mut text = self.head(out.stdout.trim_end());
        if text.is_empty() {
            text = format!("[{shown} is empty]");
        } else if lines >= LIST_LINES {
            text.push_str(&format!("\n[first {LIST_LINES} entries; list a subdirectory for more]"));
        }
        Ok(ToolResult::ok(text))
    }

    async fn grep(&self, a: GrepArgs) -> paid_core::Result<ToolResult> {
        let shown = a.path.clone().unwrap_or_else(|| ".".into());
        let path = match paths::confine(&shown, self.mount()) {
            Ok(p) => p,
            Err(e) => return Ok(ToolResult::error(format!("refused: {e}"))),
        };
        let body = format!(
            r#"p=$(confine "$PAID_PATH") || exit $?
[ -e "$p" ] || {{ echo "$PAID_PATH does not exist" >&2; exit 4; }}
cd "$paid_root" || exit 4
rel=".${{p#"$paid_root"}}"
mkdir -p {SCRATCH}
if [ -n "$PAID_GLOB" ]; then
  grep -rnIE --exclude-dir=.git --include="$PAID_GLOB" -e "$PAID_PATTERN" -- "$rel" > {SCRATCH}/grep.out
else
  grep -rnIE --exclude-dir=.git -e "$PAID_PATTERN" -- "$rel" > {SCRATCH}/grep.out
fi
s=$?
echo "matches=$(wc -l < {SCRATCH}/grep.out)" >&2
head -n {LIST_LINES} {SCRATCH}/grep.out
exit $s"#
        );
        let mut req = self.request(&path, &body, self.timeout);
        req.env.insert("PAID_PATTERN".into(), a.pattern.clone());
        req.env.insert("PAID_GLOB".into(), a.glob.clone().unwrap_or_default());
        let out = self.exec(req).await?;
        match out.exit {
            ExecExit::Code(0) => {}
            ExecExit::Code(1) => return Ok(ToolResult::ok(format!("no matches for {:?} in {shown}", a.pattern))),
            _ => return Ok(self.failed(&out)),
        }
        let total: usize = out
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("matches="))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let mut text = self.head(out.stdout.trim_end());
        if total > LIST_LINES {
            text.push_str(&format!("\n[first {LIST_LINES} of {total} matches; narrow the pattern or path]"));
        }
        Ok(ToolResult::ok(text))
    }

    async fn run(&self, a: RunArgs) -> paid_core::Result<ToolResult> {
        let limit =
            a.timeout_secs.map(Duration::from_secs).unwrap_or(self.timeout).clamp(Duration::from_secs(1), RUN_LIMIT);
        // The marker is made 50 ms before the command: file times are kept at
        // the kernel's coarse clock, so a write in the same tick would not
        // count as newer.
        let script = format!(
            r#"mkdir -p {SCRATCH} && : > {SCRATCH}/run-marker && sleep 0.05
sh -c "$PAID_CMD" 2>&1
s=$?
if find . -path ./.git -prune -o -newer {SCRATCH}/run-marker -print 2>/dev/null | grep -q .; then echo "{CHANGED}" >&2; fi
exit $s"#
        );
        let mut req = ExecRequest::shell(script).with_timeout(limit).with_cancel(self.cancel.clone());
        req.env.insert("PAID_CMD".into(), a.command.clone());
        let out = self.exec(req).await?;
        let changed = out.stderr.contains(CHANGED);
        let output = self.tail(out.stdout.trim_end());
        let head = match out.exit {
            ExecExit::Code(code) => format!("exit code: {code}"),
            ExecExit::TimedOut => format!("timed out after {}s and was killed", limit.as_secs()),
            ExecExit::OutOfMemory => "killed: out of memory".to_string(),
            ExecExit::Cancelled => "cancelled".to_string(),
        };
        let text = if output.is_empty() { format!("{head}\n[no output]") } else { format!("{head}\n{output}") };
        Ok(ToolResult { text, changed })
    }
}
