//! Checking the forge's token before relying on it: who it acts as, its
//! scopes (`x-oauth-scopes`, sent by GitHub with every answer to a classic
//! token), and access to each project's repository.

use http::{Method, StatusCode};
use paid_core::RepoRef;
use serde::{Deserialize, Serialize};

use super::client::{Reply, describe, error_from};
use super::layer::Call;
use super::models::User;
use super::{GitHubForge, repo_path};
use crate::error::{Error, Result};

/// What [`GitHubForge::check_token`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TokenCheck {
    /// The login the token acts as, when `GET /user` answered.
    pub login: Option<String>,
    /// Scopes of a classic token; `None` for fine-grained and app tokens,
    /// which do not report them.
    pub scopes: Option<Vec<String>>,
    /// Repositories checked (`owner/name`), all readable and, where GitHub
    /// reports permissions, writable.
    pub repositories: Vec<String>,
    /// Things worth knowing that did not fail the check.
    pub warnings: Vec<String>,
    /// Rate-limited calls left in this window, when GitHub said.
    pub rate_limit_remaining: Option<u64>,
}

/// The part of a repository object the check reads.
#[derive(Debug, Deserialize)]
struct Repository {
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    permissions: Option<Permissions>,
}

#[derive(Debug, Deserialize)]
struct Permissions {
    #[serde(default)]
    push: Option<bool>,
}

/// `x-oauth-scopes: repo, workflow` as a list; `None` when absent.
fn scopes(reply: &Reply) -> Option<Vec<String>> {
    let header = reply.headers.get("x-oauth-scopes")?.to_str().ok()?;
    Some(header.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
}

impl GitHubForge {
    /// Checks the token this forge sends (its [`TokenSource`](crate::TokenSource)'s
    /// current one) before it is relied on:
    ///
    /// - it must authenticate: a `401` on `GET /user` is
    ///   [`Error::Unauthorized`] (invalid, expired or revoked);
    /// - a classic token must carry the `repo` scope (`public_repo` passes,
    ///   with a warning): else [`Error::MissingScope`] naming it.
    ///   Fine-grained and app tokens report no scopes; a `403` on `GET /user`
    ///   (an app installation token) is a warning;
    /// - each of `repos` must show its issues (`404`:
    ///   [`Error::NotFound`] of the repository) and, where GitHub reports
    ///   permissions, let the token push ([`Error::NoPushAccess`]).
    ///
    /// Requests go through the forge's layers (retries, metrics). To check
    /// a token before storing it, build a forge for it:
    ///
    /// ```no_run
    /// use paid_core::RepoRef;
    /// use paid_github::{GitHubConfig, GitHubForge};
    ///
    /// # async fn demo(config: GitHubConfig, candidate: secrecy::SecretString) -> paid_github::Result<()> {
    /// let check = GitHubForge::new(config.token(candidate))?.check_token(&[RepoRef::new("octo", "app")]).await?;
    /// println!("acts as {:?}; warnings: {:?}", check.login, check.warnings);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn check_token(&self, repos: &[RepoRef]) -> Result<TokenCheck> {
        if self.client.token().is_none() {
            return Err(Error::Config {
                what: "token",
                message: "no GitHub token is configured; Paid needs one to read issues, push and open pull requests"
                    .into(),
            });
        }
        let mut check = TokenCheck::default();
        let request = describe(&Method::GET, "/user");
        let reply = self.client.send(&Call::new(Method::GET, "/user")).await?;
        let scopes = scopes(&reply);
        match reply.status {
            StatusCode::OK => {
                let user: User = serde_json::from_str(&reply.body)
                    .map_err(|source| Error::Decode { request: request.clone(), source })?;
                check.login = Some(user.login);
            }
            StatusCode::NOT_FOUND => check
                .warnings
                .push(format!("{} does not serve GET /user; the token's login is unknown", self.base_uri())),
            _ => match error_from(&request, &reply) {
                Error::Forbidden { .. } => check.warnings.push(
                    "GET /user is forbidden for this token (an app installation token?); its login is unknown".into(),
                ),
                e => return Err(e),
            },
        }
        match &scopes {
            Some(s) if !s.iter().any(|x| x == "repo" || x == "public_repo") => {
                return Err(Error::MissingScope { scope: "repo", granted: s.clone() });
            }
            Some(s) if !s.iter().any(|x| x == "repo") => {
                check.warnings.push("the token has `public_repo` only: private repositories are out of reach".into())
            }
            Some(_) => {}
            None if check.login.is_some() => check.warnings.push(
                "the token reports no scopes (fine-grained or app token); repository access was checked directly"
                    .into(),
            ),
            None => {}
        }
        check.scopes = scopes;
        for repo in repos {
            self.check_repository(repo, &mut check).await?;
            check.repositories.push(repo.to_string());
        }
        check.rate_limit_remaining = self.rate_limit().map(|r| r.remaining);
        Ok(check)
    }

    /// Reads one issue of `repo` and its permissions.
    async fn check_repository(&self, repo: &RepoRef, check: &mut TokenCheck) -> Result<()> {
        let not_found = |request: String| Error::NotFound { entity: "repository", id: repo.to_string(), request };
        let uri = format!("{}/issues?state=open&per_page=1", repo_path(repo));
        let request = describe(&Method::GET, &uri);
        let reply = self.client.send(&Call::new(Method::GET, &uri)).await?;
        match reply.status {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Err(not_found(request)),
            StatusCode::GONE => {
                return Err(Error::Unexpected {
                    request,
                    status: StatusCode::GONE.as_u16(),
                    message: format!("issues are disabled on {repo}; Paid reads issues: enable them in its settings"),
                });
            }
            _ => return Err(error_from(&request, &reply)),
        }
        let uri = repo_path(repo);
        let found: Repository = self.client.json(Method::GET, &uri, None::<&()>).await.map_err(|e| match e {
            Error::NotFound { request, .. } => not_found(request),
            e => e,
        })?;
        if found.permissions.and_then(|p| p.push) == Some(false) {
            return Err(Error::NoPushAccess { repo: repo.to_string() });
        }
        if found.archived {
            check.warnings.push(format!("{repo} is archived: GitHub refuses pushes, issues and pull requests there"));
        }
        Ok(())
    }
}
