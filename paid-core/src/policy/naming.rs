//! Names Paid derives from issues: branches and PR titles.

/// Longest slug kept in a branch name.
pub const MAX_SLUG: usize = 50;
/// Longest PR title GitHub accepts comfortably.
pub const MAX_PR_TITLE: usize = 255;

/// `paid/{issue}-{slug≤50}-{hex6}`: the run's branch, its push and PR
/// idempotency key.
pub fn branch_name(issue: u64, title: &str, hex6: &str) -> String {
    let slug = slug(title);
    if slug.is_empty() { format!("paid/{issue}-{hex6}") } else { format!("paid/{issue}-{slug}-{hex6}") }
}

/// Lowercase ASCII letters and digits joined by single dashes, at most
/// [`MAX_SLUG`] characters.
pub fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(MAX_SLUG);
    out.trim_end_matches('-').to_string()
}

/// `Fix #{n}: {title}`, cut to [`MAX_PR_TITLE`] characters. It is also
/// the first line of Paid's commits, where a closing keyword closes issues
/// once merged, so the issue's title is [neutralized](super::text) (the
/// `Fix #{n}` is Paid's own and stays).
pub fn pr_title(issue: u64, title: &str) -> String {
    let full = format!("Fix #{issue}: {}", super::text::neutralize(title.trim(), Some(issue)));
    super::text::truncate_neutral(&full, MAX_PR_TITLE, Some(issue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_follow_the_design() {
        assert_eq!(branch_name(42, "Fix the add() function!", "a1b2c3"), "paid/42-fix-the-add-function-a1b2c3");
        assert_eq!(branch_name(7, "ünïcode ✓", "000000"), "paid/7-n-code-000000");
        assert_eq!(branch_name(7, "!!!", "abcdef"), "paid/7-abcdef");
        let long = branch_name(1, &"word ".repeat(40), "ffffff");
        assert!(long.len() <= "paid/1-".len() + MAX_SLUG + 7, "{long}");
        assert!(!long.contains("--"));
    }

    #[test]
    fn pr_titles_are_capped() {
        assert_eq!(pr_title(3, " Add X "), "Fix #3: Add X");
        assert_eq!(pr_title(3, &"x".repeat(400)).chars().count(), MAX_PR_TITLE);
        assert!(pr_title(3, &"x".repeat(400)).ends_with("x…"));
    }

    #[test]
    fn the_issue_title_cannot_mention_close_or_link() {
        let z = super::super::text::ZERO_WIDTH_SPACE;
        let title = pr_title(3, "Fixes #99 for @octocat, see https://evil.example");
        assert_eq!(title, format!("Fix #3: Fixes{z} #99 for @{z}octocat, see https:/{z}/evil.example"));
        // Paid's own `Fix #3` stays live, and so does the title's own reference.
        assert_eq!(pr_title(3, "closes #3"), "Fix #3: closes #3");
    }
}
