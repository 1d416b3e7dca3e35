//! The GitHub side of the server: checking a token before it is stored or
//! used (through [`GitHubForge::check_token`], the forge's own client), and
//! reading issue references.

use paid_core::RepoRef;
use paid_github::{GitHubConfig, GitHubForge, RetryPolicy};
use secrecy::SecretString;

pub use paid_github::TokenCheck;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenRefused(pub String);

/// Checks `token` against the GitHub API at `api_url`: it must
/// authenticate, carry `repo` (or `public_repo`) when it reports scopes,
/// and read and push to each of `repos`. One attempt per request: a person
/// is waiting for the answer.
pub async fn check_token(api_url: &str, token: &SecretString, repos: &[RepoRef]) -> Result<TokenCheck, TokenRefused> {
    let config = GitHubConfig::new().base_uri(api_url).token(token.clone()).retry(RetryPolicy::none());
    let forge = GitHubForge::new(config).map_err(|e| TokenRefused(e.to_string()))?;
    forge.check_token(repos).await.map_err(|e| TokenRefused(e.to_string()))
}

/// `owner/repo` and the issue number from an issue URL
/// (`https://github.com/owner/repo/issues/12`) or `owner/repo#12`.
pub fn parse_issue_ref(s: &str) -> Option<(RepoRef, u64)> {
    let s = s.trim();
    if let Some((repo, n)) = s.split_once('#')
        && !repo.contains("://")
    {
        return Some((RepoRef::parse(repo).ok()?, n.parse().ok()?));
    }
    let path = s.split_once("://").map_or(s, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    let segs: Vec<&str> = path.split(['?', '#']).next().unwrap_or("").split('/').filter(|x| !x.is_empty()).collect();
    match segs.as_slice() {
        [.., owner, name, "issues" | "pull", n] => Some((RepoRef::new(*owner, *name), n.parse().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_refs() {
        let want = Some((RepoRef::new("acme", "widgets"), 12));
        assert_eq!(parse_issue_ref("https://github.com/acme/widgets/issues/12"), want);
        assert_eq!(parse_issue_ref("http://127.0.0.1:4000/acme/widgets/issues/12"), want);
        assert_eq!(parse_issue_ref("acme/widgets#12"), want);
        assert_eq!(parse_issue_ref("https://github.com/acme/widgets/issues/x"), None);
        assert_eq!(parse_issue_ref("acme/widgets"), None);
    }
}
