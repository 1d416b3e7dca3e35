//! Failure classification from an error's text, shared by the plugins.
//!
//! CLIs report provider errors in prose ("API Error: 429 …", "litellm.
//! RateLimitError: …"). The markers below are checked in order: quota first
//! (providers answer an exhausted quota with 429 too), then rate limits,
//! authentication, and transient faults; anything else is permanent.

use std::sync::LazyLock;

use paid_core::FailureClass;
use regex::Regex;

/// Ordered `(class, pattern)` rules; the first match wins.
static RULES: LazyLock<Vec<(FailureClass, Regex)>> = LazyLock::new(|| {
    let rules: [(FailureClass, &str); 4] = [
        (
            FailureClass::Quota,
            r"(?i)insufficient_quota|exceeded your current quota|credit balance is too low|quota exceeded|budget.?exceeded|billing|payment required|\b402\b|out of credits|usage limit",
        ),
        (
            FailureClass::RateLimited,
            r"(?i)rate.?limit|too many requests|\b429\b|resource.?exhausted|resource has been exhausted",
        ),
        (
            FailureClass::Auth,
            r"(?i)\b401\b|unauthori[sz]ed|authentication|invalid.{0,10}api.?key|api key not valid|invalid x-api-key|not logged in|please run /login|invalid token|\b403\b",
        ),
        (
            FailureClass::Transient,
            r"(?i)timed? ?out|timeout|connection (refused|reset|error|closed)|econn(reset|refused)|\b50[0234]\b|\b529\b|overloaded|temporarily unavailable|service unavailable|internal server error|network error|apiconnectionerror|bad gateway",
        ),
    ];
    rules.into_iter().filter_map(|(class, pattern)| Regex::new(pattern).ok().map(|re| (class, re))).collect()
});

/// Classifies a failure by the markers in its text.
///
/// ```
/// use paid_agents::classify;
/// use paid_core::FailureClass;
///
/// assert_eq!(classify::from_text("API Error: 429 rate_limit_error"), FailureClass::RateLimited);
/// assert_eq!(classify::from_text("You exceeded your current quota (429)"), FailureClass::Quota);
/// assert_eq!(classify::from_text("Invalid API key"), FailureClass::Auth);
/// assert_eq!(classify::from_text("upstream 503"), FailureClass::Transient);
/// assert_eq!(classify::from_text("syntax error in calc.sh"), FailureClass::Permanent);
/// ```
pub fn from_text(text: &str) -> FailureClass {
    RULES.iter().find(|(_, re)| re.is_match(text)).map(|(class, _)| *class).unwrap_or(FailureClass::Permanent)
}

/// Maps an HTTP status to a class, when it says enough on its own.
pub fn from_status(status: u16) -> Option<FailureClass> {
    match status {
        429 => Some(FailureClass::RateLimited),
        401 | 403 => Some(FailureClass::Auth),
        402 => Some(FailureClass::Quota),
        408 | 500 | 502 | 503 | 504 | 529 => Some(FailureClass::Transient),
        _ => None,
    }
}

/// The last `max` characters of `text`'s last non-empty lines, for a message.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    let start = text.char_indices().rev().nth(max).map(|(i, _)| i + 1).unwrap_or(0);
    let mut cut = start;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text[cut..].trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_wins_over_the_rate_limit_status_it_comes_with() {
        assert_eq!(from_text("Error code: 429 - {'error': {'code': 'insufficient_quota'}}"), FailureClass::Quota);
        assert_eq!(from_text("Resource has been exhausted (e.g. check quota)."), FailureClass::RateLimited);
        assert_eq!(from_text("Overloaded"), FailureClass::Transient);
        assert_eq!(from_text("see line 4290"), FailureClass::Permanent);
    }

    #[test]
    fn statuses_map_when_they_say_enough() {
        assert_eq!(from_status(429), Some(FailureClass::RateLimited));
        assert_eq!(from_status(401), Some(FailureClass::Auth));
        assert_eq!(from_status(529), Some(FailureClass::Transient));
        assert_eq!(from_status(400), None);
    }

    #[test]
    fn excerpt_keeps_the_tail() {
        assert_eq!(excerpt("  abc\ndef  ", 3), "def");
        assert_eq!(excerpt("ab", 10), "ab");
        assert_eq!(excerpt("ééé", 2), "éé");
    }
}
