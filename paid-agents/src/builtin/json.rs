//! Helpers the built-in parsers share: JSON lines, numbers, money, failures.

use paid_core::FailureClass;
use serde_json::Value;

use crate::classify;
use crate::plugin::CliFailure;
use crate::sandbox_io::shell_quote;

/// Longest message kept from a CLI's error.
pub(crate) const MESSAGE_CHARS: usize = 1_000;
/// Longest summary taken from a CLI's output.
pub(crate) const SUMMARY_CHARS: usize = 4_000;

/// The JSON objects among `text`'s lines (other lines are skipped: CLIs mix
/// in log lines).
pub(crate) fn objects(text: &str) -> impl Iterator<Item = Value> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
}

/// The one JSON document in `text`, starting at its first line that opens
/// an object (CLIs may print warnings before it).
pub(crate) fn document(text: &str) -> Option<Value> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('{')
            && let Ok(v) = serde_json::from_str::<Value>(text[offset..].trim())
        {
            return Some(v);
        }
        offset += line.len();
    }
    None
}

/// The unsigned number at `pointer`, or 0.
pub(crate) fn num(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// The string at `pointer`.
pub(crate) fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// A token count as CLIs print it: `950`, `1,024`, `1.2k`, `12k`, `1.5M`.
pub(crate) fn count(s: &str) -> u64 {
    let s = s.trim().replace(',', "");
    let (number, scale) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('m' | 'M') => (&s[..s.len() - 1], 1e6),
        _ => (s.as_str(), 1.0),
    };
    number.parse::<f64>().map(|n| (n * scale).round() as u64).unwrap_or(0)
}

/// US dollars to micro-dollars.
pub(crate) fn usd_micros(usd: f64) -> Option<i64> {
    (usd.is_finite() && usd >= 0.0).then(|| (usd * 1e6).round() as i64)
}

/// A failure from a CLI's error text and, when known, the HTTP status.
pub(crate) fn failure(message: &str, status: Option<u16>) -> CliFailure {
    let mut class = classify::from_text(message);
    if class == FailureClass::Permanent
        && let Some(c) = status.and_then(classify::from_status)
    {
        class = c;
    }
    CliFailure { class, message: classify::excerpt(message, MESSAGE_CHARS) }
}

/// A summary cut to [`SUMMARY_CHARS`], or `None` when blank.
pub(crate) fn summary(text: &str) -> Option<String> {
    let s = classify::excerpt(text, SUMMARY_CHARS);
    (!s.is_empty()).then_some(s)
}

/// `"$(cat <file>)"`: the prompt as one shell word.
pub(crate) fn prompt_word(prompt_file: &str) -> String {
    format!("\"$(cat {})\"", shell_quote(prompt_file))
}

/// ` <flag> '<model>'`, or nothing without a model.
pub(crate) fn model_flag(flag: &str, model: Option<&str>) -> String {
    match model {
        Some(m) if !m.trim().is_empty() => format!(" {flag} {}", shell_quote(m)),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_may_follow_log_lines() {
        let v = document("Loaded cached credentials.\n{\n  \"a\": 1\n}\n").unwrap();
        assert_eq!(num(&v, "/a"), 1);
        assert!(document("no json here").is_none());
    }

    #[test]
    fn objects_skip_noise() {
        let all: Vec<_> = objects("{\"a\":1}\nnoise\n[1]\n{bad\n {\"b\":2}").collect();
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn token_counts_parse_as_clis_print_them() {
        assert_eq!(count("950"), 950);
        assert_eq!(count("1,024"), 1_024);
        assert_eq!(count("1.2k"), 1_200);
        assert_eq!(count("12k"), 12_000);
        assert_eq!(count("1.5M"), 1_500_000);
        assert_eq!(count("x"), 0);
    }

    #[test]
    fn money_and_flags() {
        assert_eq!(usd_micros(0.0123456), Some(12_346));
        assert_eq!(usd_micros(f64::NAN), None);
        assert_eq!(model_flag("--model", Some("gpt-4o")), " --model 'gpt-4o'");
        assert_eq!(model_flag("--model", Some(" ")), "");
        assert_eq!(prompt_word("/tmp/p.md"), "\"$(cat '/tmp/p.md')\"");
    }
}
