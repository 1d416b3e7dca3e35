//! Moving text into the sandbox without stdin.
//!
//! [`SandboxSession::exec`] takes no standard input, so text reaches the
//! sandbox through environment variables, and a small shell command writes
//! them where they belong with `printf '%s'` (exact bytes, no escapes, no
//! trailing newline). Linux caps one variable at 128 KiB
//! (`MAX_ARG_STRLEN`) and all of argv plus the environment at a fraction of
//! the stack limit, so text is cut into [`CHUNK_BYTES`] pieces, at most
//! [`EXEC_BYTES`] per exec, and longer text is appended over several execs.

use std::collections::BTreeMap;

use paid_core::engine::{ExecOutput, SandboxSession};
use paid_core::{Error as CoreError, ExecExit, ExecRequest};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The largest piece of text put into one environment variable.
pub(crate) const CHUNK_BYTES: usize = 96 * 1024;
/// The most text carried into the sandbox by one exec.
pub(crate) const EXEC_BYTES: usize = 8 * CHUNK_BYTES;
/// Where Paid keeps its scratch files inside the sandbox (a tmpfs).
pub(crate) const SCRATCH: &str = "/tmp/paid";

/// Quotes `s` for a POSIX shell: `it's` becomes `'it'\''s'`.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Splits `text` into pieces of at most `max` bytes, on character boundaries.
pub(crate) fn split_chunks(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(max.max(4));
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    pieces
}

/// Text carried by environment variables `{prefix}_0`, `{prefix}_1`, …
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EnvPayload {
    /// The variables.
    pub env: BTreeMap<String, String>,
    /// The quoted variable references, for `printf '%s' <args>`; `""` for
    /// empty text.
    pub printf_args: String,
}

impl EnvPayload {
    /// Carries `text` (at most [`EXEC_BYTES`]) in variables named `prefix_N`.
    pub fn new(prefix: &str, text: &str, what: &'static str) -> Result<Self, Error> {
        if text.contains('\0') {
            return Err(Error::Payload { what, message: "it contains a NUL byte".into() });
        }
        if text.len() > EXEC_BYTES {
            return Err(Error::Payload {
                what,
                message: format!("{} bytes is more than one exec carries ({EXEC_BYTES})", text.len()),
            });
        }
        let mut env = BTreeMap::new();
        let mut args = Vec::new();
        for (i, piece) in split_chunks(text, CHUNK_BYTES).into_iter().enumerate() {
            let name = format!("{prefix}_{i}");
            args.push(format!("\"${name}\""));
            env.insert(name, piece.to_string());
        }
        let printf_args = if args.is_empty() { "\"\"".to_string() } else { args.join(" ") };
        Ok(Self { env, printf_args })
    }
}

/// Writes `text` to `dest` (an absolute path Paid chose, never one from the
/// agent) inside the sandbox, creating its directory. Uses as many execs as
/// the text needs.
pub(crate) async fn write_text(
    session: &SandboxSession,
    cancel: &CancellationToken,
    dest: &str,
    text: &str,
    what: &'static str,
) -> paid_core::Result<()> {
    if text.contains('\0') {
        return Err(Error::Payload { what, message: "it contains a NUL byte".into() }.into());
    }
    let quoted = shell_quote(dest);
    let mut first = true;
    let parts = if text.is_empty() { vec![""] } else { split_chunks(text, EXEC_BYTES) };
    for part in parts {
        let payload = EnvPayload::new("PAID_DATA", part, what)?;
        let redirect = if first { ">" } else { ">>" };
        let script =
            format!("mkdir -p \"$(dirname {quoted})\" && printf '%s' {} {redirect} {quoted}", payload.printf_args);
        let mut req = ExecRequest::shell(script).with_cancel(cancel.clone());
        req.env = payload.env;
        let out = session.exec(req).await?;
        check(&out, what)?;
        first = false;
    }
    Ok(())
}

/// Turns a failed helper exec into an error naming what it was for.
pub(crate) fn check(out: &ExecOutput, what: &str) -> paid_core::Result<()> {
    match out.exit {
        ExecExit::Code(0) => Ok(()),
        ExecExit::Cancelled | ExecExit::TimedOut => Err(CoreError::Cancelled),
        exit => Err(CoreError::Agent(format!(
            "could not write {what} in the sandbox ({exit:?}): {}",
            out.stderr.trim().lines().last().unwrap_or("")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn chunks_respect_char_boundaries_and_rejoin() {
        let text = "é".repeat(10);
        let pieces = split_chunks(&text, 5);
        assert!(pieces.iter().all(|p| p.len() <= 5));
        assert_eq!(pieces.concat(), text);
        assert!(split_chunks("", 5).is_empty());
    }

    #[test]
    fn payload_names_variables_in_order() {
        let text = "a".repeat(CHUNK_BYTES + 1);
        let p = EnvPayload::new("P", &text, "test").unwrap();
        assert_eq!(p.printf_args, "\"$P_0\" \"$P_1\"");
        assert_eq!(p.env["P_0"].len(), CHUNK_BYTES);
        assert_eq!(p.env["P_1"], "a");
        assert_eq!(EnvPayload::new("P", "", "test").unwrap().printf_args, "\"\"");
        assert!(EnvPayload::new("P", "a\0b", "test").is_err());
        assert!(EnvPayload::new("P", &"x".repeat(EXEC_BYTES + 1), "test").is_err());
    }
}
