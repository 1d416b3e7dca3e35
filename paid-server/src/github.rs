//! Checking a GitHub token before it is used: who it acts as, its scopes
//! (`x-oauth-scopes` of `GET /user`), and access to each project's
//! repository.

use std::time::Duration;

use paid_core::RepoRef;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// An HTTP client with rustls (ring) and the platform's roots.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("paid/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// What a token check found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TokenCheck {
    /// The login the token acts as, when `GET /user` answered.
    pub login: Option<String>,
    /// Scopes of a classic token; `None` for fine-grained and app tokens,
    /// which do not report them.
    pub scopes: Option<Vec<String>>,
    /// Repositories checked.
    pub repositories: Vec<String>,
    /// Things worth knowing that did not fail the check.
    pub warnings: Vec<String>,
    /// Rate-limit calls left, when reported.
    pub rate_limit_remaining: Option<u64>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenRefused(pub String);

fn get(client: &reqwest::Client, url: &str, token: &SecretString) -> reqwest::RequestBuilder {
    client
        .get(url)
        .bearer_auth(token.expose_secret())
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
}

/// Checks `token` against the API at `api_url`: it must authenticate, carry
/// `repo` (or `public_repo`) when it reports scopes, and read (and, where
/// the API says so, push to) each of `repos`.
pub async fn check_token(
    client: &reqwest::Client,
    api_url: &str,
    token: &SecretString,
    repos: &[RepoRef],
) -> Result<TokenCheck, TokenRefused> {
    let api = api_url.trim_end_matches('/');
    let unreachable = |e: reqwest::Error| TokenRefused(format!("cannot reach the GitHub API at {api}: {e}"));
    let mut check = TokenCheck::default();
    let resp = get(client, &format!("{api}/user"), token).send().await.map_err(unreachable)?;
    let status = resp.status().as_u16();
    check.rate_limit_remaining =
        resp.headers().get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let scopes: Option<Vec<String>> = resp
        .headers()
        .get("x-oauth-scopes")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect());
    match status {
        200 => {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            check.login = body.get("login").and_then(|l| l.as_str()).map(str::to_string);
        }
        401 => return Err(TokenRefused(format!("GitHub at {api} rejected the token (401 Bad credentials)"))),
        403 => check
            .warnings
            .push("GET /user is forbidden for this token (an app installation token?); its login is unknown".into()),
        404 => check.warnings.push(format!("{api} does not serve GET /user; scopes were not checked")),
        s => return Err(TokenRefused(format!("GET {api}/user answered {s}"))),
    }
    match &scopes {
        Some(s) if !s.iter().any(|x| x == "repo" || x == "public_repo") => {
            return Err(TokenRefused(format!(
                "the token lacks the `repo` scope (it has: {}); Paid pushes branches and opens pull requests",
                if s.is_empty() { "none".to_string() } else { s.join(", ") }
            )));
        }
        Some(s) if !s.iter().any(|x| x == "repo") => {
            check.warnings.push("the token has `public_repo` only: private repositories are out of reach".into())
        }
        Some(_) => {}
        None if status == 200 => check.warnings.push(
            "the token reports no scopes (fine-grained or app token); repository access was checked directly".into(),
        ),
        None => {}
    }
    check.scopes = scopes;
    for repo in repos {
        let url = format!("{api}/repos/{}/{}/issues?state=open&per_page=1", repo.owner, repo.name);
        let resp = get(client, &url, token).send().await.map_err(unreachable)?;
        match resp.status().as_u16() {
            200 => {}
            404 => {
                return Err(TokenRefused(format!(
                    "the token cannot see {repo} (404): check the repository name and that the token has access to it"
                )));
            }
            s => return Err(TokenRefused(format!("reading the issues of {repo} answered {s}"))),
        }
        let resp = get(client, &format!("{api}/repos/{}/{}", repo.owner, repo.name), token)
            .send()
            .await
            .map_err(unreachable)?;
        if resp.status().as_u16() == 200 {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            if body.pointer("/permissions/push").and_then(|p| p.as_bool()) == Some(false) {
                return Err(TokenRefused(format!("the token can read {repo} but not push to it")));
            }
        }
        check.repositories.push(repo.to_string());
    }
    Ok(check)
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
