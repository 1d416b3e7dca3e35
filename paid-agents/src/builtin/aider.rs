//! Aider: `aider --yes-always --no-auto-commits --message-file FILE`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use paid_core::Usage;
use regex::Regex;

use super::json::{self, model_flag};
use crate::Error;
use crate::plugin::{CliOutput, CliPlugin, CliReport, Invocation, ProxyAccess};
use crate::sandbox_io::{SCRATCH, shell_quote};

/// Most files handed to aider when git does not work in the sandbox.
const NO_GIT_FILES: usize = 50;

/// [Aider](https://aider.chat), run once on a message file.
///
/// - Command: `aider --message-file FILE --yes-always --no-auto-commits
///   --no-pretty --no-stream [--model M] [--read CONVENTIONS.md] …`, with
///   its history files in `/tmp/paid` and its tag cache removed afterwards,
///   so nothing of aider's own lands in the commit. When git cannot read the
///   worktree from inside the sandbox (an engine worktree's `.git` points
///   at the host), aider runs with `--no-git` and gets the worktree's small
///   text files (at most 50) as editable files.
/// - Proxy: `OPENAI_API_BASE`/`OPENAI_BASE_URL` and `ANTHROPIC_API_BASE`,
///   with the run token as `OPENAI_API_KEY` and `ANTHROPIC_API_KEY`.
/// - Reads `CONVENTIONS.md`, passed with `--read`.
/// - Output: plain text. `Tokens: 1.2k sent, 300 received. Cost: $0.01
///   message, $0.02 session.` lines give usage (summed) and cost (the last
///   session total); `Applied edit to FILE` lines and the model's prose
///   make the summary; a `litellm.*Error` after the last sign of progress is
///   a failure (aider exits 0 after giving up on retries).
#[derive(Debug, Clone, Copy, Default)]
pub struct Aider;

static TOKENS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?m)^Tokens: (?P<sent>[\d.]+[kKmM]?) sent(?:, (?P<write>[\d.]+[kKmM]?) cache write)?(?:, (?P<hit>[\d.]+[kKmM]?) cache hit)?, (?P<recv>[\d.]+[kKmM]?) received\.(?: Cost: \$(?P<message>[\d.]+) message, \$(?P<session>[\d.]+) session\.)?",
    )
    .ok()
});

/// The error line litellm prints, and aider's own explanations after it.
static ERROR: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"litellm\.\w*Error").ok());
static EXPLANATION: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)error code: \d{3}|the api provider (?:has rate limited|is not able|is down)").ok()
});

static NOISE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^(?:Aider v|Model:|Main model:|Weak model:|Editor model:|Git repo:|Repo-map:|Added .* to the chat|Tokens:|Cost:|Warning|Note:|https://aider\.chat|Use /help|Cur working dir|Retrying in|Scanning repo|Initial repo scan|Can't initialize|Unable to|Detected dumb terminal)",
    )
    .ok()
});

impl CliPlugin for Aider {
    fn kind(&self) -> &str {
        "aider"
    }

    fn executable(&self) -> Option<&str> {
        Some("aider")
    }

    fn command(&self, inv: &Invocation<'_>) -> Result<String, Error> {
        let read = inv.instruction_file.map(|f| format!(" --read {}", shell_quote(f))).unwrap_or_default();
        // The instruction file is read-only context, not a file to edit.
        let skip =
            inv.instruction_file.map(|f| format!(" ! -path {}", shell_quote(&format!("./{f}")))).unwrap_or_default();
        Ok(format!(
            r#"set --
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  set -- --no-git
  files=$(find . -path ./.git -prune -o -type f -size -64k ! -path '*/.*'{skip} -print | sort | head -n {NO_GIT_FILES})
  while IFS= read -r f; do
    if [ -n "$f" ] && grep -Iq . "$f"; then set -- "$@" --file "$f"; fi
  done <<PAID_FILES
$files
PAID_FILES
fi
aider --message-file {prompt} --yes-always --no-auto-commits --no-dirty-commits --no-gitignore \
  --no-check-update --no-show-model-warnings --no-pretty --no-stream --no-fancy-input --no-detect-urls \
  --analytics-disable --chat-history-file {SCRATCH}/aider.chat.history.md \
  --input-history-file {SCRATCH}/aider.input.history{model}{read} "$@"
status=$?
rm -rf .aider.tags.cache.v*
exit $status"#,
            prompt = shell_quote(inv.prompt_file),
            model = model_flag("--model", inv.model),
        ))
    }

    fn proxy_env(&self, proxy: &ProxyAccess<'_>) -> BTreeMap<String, String> {
        let openai = proxy.openai_url();
        BTreeMap::from([
            ("OPENAI_API_BASE".into(), openai.clone()),
            ("OPENAI_BASE_URL".into(), openai),
            ("OPENAI_API_KEY".into(), proxy.token.to_string()),
            ("ANTHROPIC_API_BASE".into(), proxy.anthropic_url()),
            ("ANTHROPIC_API_KEY".into(), proxy.token.to_string()),
        ])
    }

    fn env(&self) -> BTreeMap<String, String> {
        // litellm would fetch its price map from the internet at import.
        BTreeMap::from([("LITELLM_LOCAL_MODEL_COST_MAP".into(), "True".into())])
    }

    fn instruction_file(&self) -> Option<&str> {
        Some("CONVENTIONS.md")
    }

    fn parse(&self, out: &CliOutput<'_>) -> CliReport {
        let mut report = CliReport::default();
        let text = out.stdout;
        if let Some(re) = TOKENS.as_ref() {
            let mut usage: Option<Usage> = None;
            for caps in re.captures_iter(text) {
                let count = |name: &str| caps.name(name).map(|m| json::count(m.as_str())).unwrap_or(0);
                *usage.get_or_insert_with(Usage::default) += Usage {
                    input: count("sent"),
                    cache_write: count("write"),
                    cache_read: count("hit"),
                    output: count("recv"),
                    reasoning: 0,
                };
                if let Some(session) = caps.name("session").and_then(|m| m.as_str().parse::<f64>().ok()) {
                    report.cost_micros = json::usd_micros(session);
                }
            }
            report.usage = usage;
        }
        let lines: Vec<&str> = text.lines().collect();
        let progress = lines.iter().rposition(|l| l.starts_with("Tokens:") || l.starts_with("Applied edit to"));
        let last = |re: &Option<Regex>| re.as_ref().and_then(|re| lines.iter().rposition(|l| re.is_match(l)));
        let error = last(&ERROR).or_else(|| last(&EXPLANATION));
        if let Some(e) = error
            && progress.is_none_or(|p| e > p)
        {
            // The error line and aider's explanation after it.
            let message = lines[e..].iter().take(3).copied().collect::<Vec<_>>().join("\n");
            report.failure = Some(json::failure(&message, None));
        }
        report.summary = json::summary(&prose(&lines));
        report
    }
}

/// The model's prose and aider's edit notices, without banners, token lines
/// and edit blocks.
fn prose(lines: &[&str]) -> String {
    let mut kept = Vec::new();
    let (mut in_fence, mut in_edit) = (false, false);
    for line in lines {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if trimmed.starts_with("<<<<<<< SEARCH") {
            in_edit = true;
            continue;
        }
        if trimmed.starts_with(">>>>>>> REPLACE") {
            in_edit = false;
            continue;
        }
        if in_fence || in_edit || NOISE.as_ref().is_some_and(|re| re.is_match(trimmed)) {
            continue;
        }
        kept.push(*line);
    }
    kept.join("\n").trim().to_string()
}
