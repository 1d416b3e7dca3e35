//! Neutralizing text Paid did not write (the agent's summary, a model's
//! plan, an issue's title, an error message) before Paid posts it on the
//! forge as its own: in a pull request's body or title, a commit message, an
//! issue comment or a sub-issue.
//!
//! [`neutralize`] is applied at one place, the boundary of the templates
//! that produce that text (`engine/templates.rs`), and to the PR title
//! ([`crate::policy::pr_title`]).
//!
//! It makes sure such text cannot, once GitHub renders it:
//!
//! - **notify anyone**: every `@name` (user, team, and `a@b.c` e-mail
//!   autolinks) gets a zero-width space after the `@`;
//! - **close another issue**: a closing keyword (`close`, `closes`,
//!   `closed`, `fix`, `fixes`, `fixed`, `resolve`, `resolves`, `resolved`,
//!   any case, optionally followed by `:`) followed by a reference (`#N`,
//!   `GH-N`, `owner/repo#N`, a URL) gets a zero-width space after the
//!   keyword, unless the reference is `#own` (the run's own issue);
//! - **link anywhere**: `://` becomes `:/`, zero-width space, `/` (no
//!   autolink, no working URL), `www.` gets one after `www` (GFM's
//!   extended autolinks), and so do the Markdown and HTML constructs that
//!   make links or images whatever their URL: `](` (inline links and
//!   images), `]:` (link reference definitions), and `<` before a letter,
//!   `/`, `!` or `?` (raw HTML, autolinks `<scheme:...>`, comments such as
//!   Paid's own comment markers);
//! - **smuggle any of these through an entity**: `&` before `#` or a letter
//!   (`&#64;`, `&commat;`) gets one too, so the entity shows as text.
//!
//! The inserted character is invisible, so the text reads the same. It is
//! inserted inside code spans and code blocks too: leaving them alone would
//! make safety depend on parsing Markdown exactly as GitHub does (an
//! unclosed backtick, an escaped one, or a fence inside a list item, and a
//! "code span" is live text), while a zero-width space in code is harmless.
//! The function is idempotent, and a prefix of its output (as truncation
//! leaves) is still neutral.

/// The character [`neutralize`] inserts: U+200B ZERO WIDTH SPACE (not
/// whitespace for any regex engine, and not part of a login, a domain or a
/// keyword).
pub const ZERO_WIDTH_SPACE: char = '\u{200b}';

/// Closing keywords, longest first so that `fixes` is not read as `fix`.
const KEYWORDS: &[&str] = &["resolves", "resolved", "resolve", "closes", "closed", "close", "fixes", "fixed", "fix"];

/// `text` made safe to post as Paid's own: no live `@mentions`, no closing
/// keyword for an issue other than `own_issue` (`None`: for no issue at
/// all), no clickable links. See the [module docs](self) for exactly what
/// changes.
pub fn neutralize(text: &str, own_issue: Option<u64>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if let Some(len) = closing_keyword(&chars, i, own_issue) {
            out.extend(&chars[i..i + len]);
            out.push(ZERO_WIDTH_SPACE);
            i += len;
            continue;
        }
        if is_www(&chars, i) {
            out.extend(&chars[i..i + 3]);
            out.push(ZERO_WIDTH_SPACE);
            i += 3;
            continue;
        }
        out.push(c);
        let insert = match (c, next) {
            // Mentions, team mentions, e-mail autolinks.
            ('@', Some(n)) => n.is_ascii_alphanumeric() || n == '-' || n == '_',
            // Character references: `&#64;`, `&#x40;`, `&commat;`.
            ('&', Some(n)) => n == '#' || n.is_ascii_alphabetic(),
            // Raw HTML, HTML comments, `<scheme:...>` autolinks.
            ('<', Some(n)) => n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?'),
            // Inline links and images, link reference definitions.
            (']', Some(n)) => n == '(' || n == ':',
            // `scheme://`: `:/` here, the zero-width space, then `/`.
            (':', Some('/')) => chars.get(i + 2) == Some(&'/'),
            _ => false,
        };
        if insert && c == ':' {
            out.push('/');
            out.push(ZERO_WIDTH_SPACE);
            i += 2;
            continue;
        }
        if insert {
            out.push(ZERO_WIDTH_SPACE);
        }
        i += 1;
    }
    out
}

/// `www.`, any case, at `i`.
fn is_www(chars: &[char], i: usize) -> bool {
    chars.len() >= i + 4 && chars[i..i + 3].iter().all(|c| c.eq_ignore_ascii_case(&'w')) && chars[i + 3] == '.'
}

/// The length of a closing keyword at `i` that must be neutralized: one
/// followed (after optional `:`, whitespace or emphasis marks) by an issue
/// reference other than `#own_issue`.
fn closing_keyword(chars: &[char], i: usize, own_issue: Option<u64>) -> Option<usize> {
    let len = KEYWORDS
        .iter()
        .find(|k| {
            chars.len() >= i + k.len()
                && chars[i..i + k.len()].iter().zip(k.chars()).all(|(a, b)| a.to_ascii_lowercase() == b)
        })?
        .len();
    if chars.get(i + len) == Some(&ZERO_WIDTH_SPACE) {
        // Neutralized already.
        return None;
    }
    let mut j = i + len;
    while j < chars.len() && (chars[j].is_whitespace() || matches!(chars[j], ':' | '*' | '_' | '~' | '`' | '(' | '[')) {
        j += 1;
    }
    let token: String = chars[j..].iter().take_while(|c| !c.is_whitespace()).collect();
    if !is_reference(&token) || is_own(&token, own_issue) { None } else { Some(len) }
}

/// Whether `token` (what follows a keyword) may be read as an issue
/// reference: `#N`, `GH-N`, `owner/repo#N`, or a URL. Generous on purpose:
/// neutralizing a keyword that closed nothing costs an invisible character.
fn is_reference(token: &str) -> bool {
    let lower = token.to_ascii_lowercase();
    token.contains('#') || lower.starts_with("gh-") || token.contains('/') || lower.contains("github.com")
}

/// Whether `token` is exactly `#own`, maybe followed by punctuation.
fn is_own(token: &str, own_issue: Option<u64>) -> bool {
    let Some(own) = own_issue else { return false };
    let Some(rest) = token.strip_prefix('#') else { return false };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = rest[digits.len()..].chars().next();
    digits.parse::<u64>().ok() == Some(own)
        && !digits.starts_with('0')
        && after.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '#' || c == '/'))
}

/// Cuts `neutral` (text [`neutralize`] returned, or that it leaves as it
/// is) to at most `max_chars` characters, ending with `…` when cut, and
/// neutral still.
///
/// A plain cut is not enough: it can turn the run's own `Closes #12` into
/// `Closes #1…`, a live reference to another issue. The cut is therefore
/// neutralized again; that inserts at most one character (only the last
/// reference changes): when that does not fit, the cut is one character
/// shorter.
pub fn truncate_neutral(neutral: &str, max_chars: usize, own_issue: Option<u64>) -> String {
    if neutral.chars().count() <= max_chars {
        return neutral.to_string();
    }
    for keep in [max_chars.saturating_sub(1), max_chars.saturating_sub(2)] {
        let cut: String = neutral.chars().take(keep).chain(['…']).collect();
        let out = neutralize(&cut, own_issue);
        if out.chars().count() <= max_chars {
            return out;
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: char = ZERO_WIDTH_SPACE;

    fn n(text: &str) -> String {
        neutralize(text, Some(12))
    }

    #[test]
    fn mentions_are_defused() {
        assert_eq!(n("thanks @octocat!"), format!("thanks @{Z}octocat!"));
        assert_eq!(n("cc @github/security-team"), format!("cc @{Z}github/security-team"));
        assert_eq!(n("@a-b and @_x"), format!("@{Z}a-b and @{Z}_x"));
        assert!(!n("(@octocat) \\@octocat **@octocat**").contains("@octocat"));
        // An e-mail address is no autolink any more.
        assert_eq!(n("mail root@example.com"), format!("mail root@{Z}example.com"));
        // A lone `@` stays as it is.
        assert_eq!(n("a @ b, @ @"), "a @ b, @ @");
        // Negative control: the text is unchanged where there is nothing to do.
        let plain = "Fixed the parser; see src/lib.rs and the tests.";
        assert_eq!(n(plain), plain);
    }

    #[test]
    fn entities_cannot_smuggle_a_mention() {
        assert_eq!(
            n("&#64;octocat &#x40;octocat &commat;octocat"),
            format!("&{Z}#64;octocat &{Z}#x40;octocat &{Z}commat;octocat")
        );
        assert_eq!(n("R & D"), "R & D");
    }

    #[test]
    fn each_closing_keyword_form_for_another_issue_is_defused() {
        for keyword in KEYWORDS {
            for kw in [keyword.to_string(), keyword.to_uppercase(), capitalized(keyword)] {
                for reference in [
                    "#99",
                    "octo/other#99",
                    "GH-99",
                    "gh-99",
                    "https://github.com/octo/other/issues/99",
                    "github.com/octo/other/issues/99",
                ] {
                    for sep in [" ", ": ", "  ", "\n", ":", "** ", ""] {
                        let text = format!("{kw}{sep}{reference}");
                        let out = n(&text);
                        assert!(out.starts_with(&format!("{kw}{Z}")), "{text:?} -> {out:?}");
                    }
                }
            }
        }
        assert_eq!(n("This fixes #99."), format!("This fixes{Z} #99."));
        assert_eq!(n("Resolves: #7, closes #8"), format!("Resolves{Z}: #7, closes{Z} #8"));
    }

    fn capitalized(s: &str) -> String {
        let mut c = s.chars();
        c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
    }

    #[test]
    fn the_runs_own_issue_is_kept() {
        for text in ["Closes #12", "closes #12", "Fixes #12.", "Resolves: #12, and more", "fix #12\n"] {
            assert_eq!(n(text), text, "own issue kept");
        }
        // Only #12 itself: not #120, #1, #012, another repository's #12, or
        // any issue when there is no own issue.
        for text in ["Closes #120", "Closes #1", "Closes #012", "Closes octo/other#12", "Closes #12#13", "Closes #12/x"]
        {
            assert!(n(text).starts_with(&format!("Closes{Z}")), "{text:?}");
        }
        assert_eq!(neutralize("Closes #12", None), format!("Closes{Z} #12"));
    }

    #[test]
    fn keywords_without_a_reference_are_left_alone() {
        for text in ["It fixes the bug.", "Closed the file handle", "resolved: yes", "prefix #", "fixes"] {
            let out = n(text);
            assert_eq!(out.replace(Z, "").as_str(), text);
            if !text.contains('#') {
                assert_eq!(out, text);
            }
        }
    }

    #[test]
    fn links_are_not_clickable() {
        assert_eq!(n("see https://evil.example/x"), format!("see https:/{Z}/evil.example/x"));
        assert_eq!(n("HTTP://EVIL.example"), format!("HTTP:/{Z}/EVIL.example"));
        assert_eq!(n("ftp://a file:///etc"), format!("ftp:/{Z}/a file:/{Z}//etc"));
        assert_eq!(n("go to www.evil.example"), format!("go to www{Z}.evil.example"));
        assert_eq!(n("[docs](//evil.example)"), format!("[docs]{Z}(//evil.example)"));
        assert_eq!(n("![img](x.png)"), format!("![img]{Z}(x.png)"));
        assert_eq!(n("[r]: http:evil.example"), format!("[r]{Z}: http:evil.example"));
        assert_eq!(n("<https://evil.example>"), format!("<{Z}https:/{Z}/evil.example>"));
        assert_eq!(n("<a href=\"//evil\">x</a>"), format!("<{Z}a href=\"//evil\">x<{Z}/a>"));
        assert_eq!(n("<!-- paid:run:x -->"), format!("<{Z}!-- paid:run:x -->"));
        // Comparisons and generics read the same.
        assert_eq!(n("a < b, Vec<u8>").replace(Z, ""), "a < b, Vec<u8>");
        assert!(!n("https://evil.example/x").contains("://"));
    }

    #[test]
    fn code_spans_and_blocks_are_neutralized_too() {
        // Whatever GitHub thinks is code, nothing in it is live: an
        // unclosed or escaped backtick cannot leave a mention behind.
        for text in [
            "`@octocat`",
            "\\`@octocat\\`",
            "`` ` @octocat",
            "```\n@octocat fixes #99 https://evil.example\n```",
            "- ```\n  @octocat\n",
        ] {
            let out = n(text);
            assert!(!out.contains("@octocat"), "{text:?} -> {out:?}");
            assert!(!out.contains("fixes #99"), "{text:?} -> {out:?}");
            assert!(!out.contains("https://"), "{text:?} -> {out:?}");
            // The code reads the same.
            assert_eq!(out.replace(Z, ""), text);
        }
    }

    const HOSTILE: &str = "Done @octocat. Fixes #99, closes octo/other#5, resolves GH-3, fix \
        https://github.com/o/r/issues/4; see https://evil.example/x, www.evil.example, [a](//e.example), \
        <a href=x>y</a> &#64;octocat ]: `@octocat` closes #12.";

    #[test]
    fn neutralizing_is_idempotent_and_only_inserts_zero_width_spaces() {
        let once = n(HOSTILE);
        assert_eq!(n(&once), once);
        assert_eq!(once.replace(Z, ""), HOSTILE);
        assert!(once.ends_with("closes #12."), "own issue kept: {once}");
        assert!(!once.contains("@octocat") && !once.contains("://") && !once.contains("Fixes #99"), "{once}");
    }

    #[test]
    fn every_truncation_stays_neutral_and_within_bounds() {
        let neutral = n(&format!("{HOSTILE} Closes #12"));
        let total = neutral.chars().count();
        for max in 0..=total + 1 {
            let cut = truncate_neutral(&neutral, max, Some(12));
            assert!(cut.chars().count() <= max, "{max}: {cut:?}");
            assert_eq!(n(&cut), cut, "cut at {max} is neutral");
        }
        // The case the re-neutralizing is for: `#12` cut to `#1`.
        let cut = truncate_neutral("Closes #12", 10, Some(12));
        assert_eq!(cut, "Closes #12");
        assert_eq!(truncate_neutral("Closes #12 and more", 11, Some(12)), "Closes #12…");
        let cut = truncate_neutral("Closes #12 and more", 10, Some(12));
        assert_eq!(cut, format!("Closes{Z} #…"));
        assert_eq!(truncate_neutral("Closes #12 and more", 12, Some(12)), "Closes #12 …");
        assert_eq!(truncate_neutral("abc", 0, Some(12)), "");
    }
}
