//! GitHub for Paid: the [`Forge`](paid_core::Forge) on GitHub's REST API
//! ([`GitHubForge`]) and the [`Workspaces`](paid_core::Workspaces) on git
//! ([`GitWorkspaces`]): mirror clones, one worktree per run, host-side push.
//! Both read their token from a [`TokenSource`] on each use; a
//! [`SharedToken`] shared by the two is how a rotated token takes effect
//! without rebuilding either. The workspaces send the token only to the
//! forge's [`WebOrigin`] (derive it from the API URL the forge uses).
//! With the `fake` feature, `fake::FakeGitHub` is an in-process GitHub for
//! tests whose responses follow recorded sessions. With the `webhooks`
//! feature, `webhooks::WebhookReceiver` is an axum router that verifies and
//! forwards GitHub webhook deliveries.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use paid_core::{Forge, PollRequest, RepoRef, Workspaces};
//! use paid_github::{GitHubConfig, GitHubForge, GitWorkspaces, GitWorkspacesConfig, SharedToken, WebOrigin};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let token = SharedToken::new(Some(std::env::var("GITHUB_TOKEN")?.into()));
//! let github = GitHubForge::new(GitHubConfig::new().token_source(Arc::new(token.clone())))?;
//! let check = github.check_token(&[RepoRef::new("octo", "app")]).await?;
//! println!("acting as {:?}", check.login);
//! // The token goes to git only at https://github.com, the API's web host.
//! let origin = WebOrigin::from_api_base(github.base_uri())?;
//! let forge: Arc<dyn Forge> = Arc::new(github);
//! let workspaces: Arc<dyn Workspaces> = Arc::new(GitWorkspaces::new(
//!     GitWorkspacesConfig::new("/var/lib/paid/git")
//!         .token_source(Arc::new(token.clone()))
//!         .forge_origin(origin),
//! ));
//!
//! let issues = forge
//!     .poll_triggered(&PollRequest { repo: RepoRef::new("octo", "app"), labels: vec!["paid-build".into()] })
//!     .await?;
//! println!("{} issues to work on", issues.len());
//! // The operator stored a new token: the next request of both uses it.
//! token.set(Some(std::env::var("NEW_GITHUB_TOKEN")?.into()));
//! # let _ = workspaces;
//! # Ok(())
//! # }
//! ```

mod error;
mod forge;
mod origin;
mod workspaces;

pub use error::{Error, Result, ValidationError};
pub use forge::{
    Capabilities, ClientStats, DEFAULT_BASE_URI, FailingCheck, FeedbackRequest, GitHubConfig, GitHubForge, NoToken,
    PrFeedback, PrState, RateLimit, RetryPolicy, Review, ReviewComment, ReviewThread, SharedToken, TokenCheck,
    TokenSource, Votes,
};
pub use origin::WebOrigin;
pub use workspaces::{CloneProgress, GitWorkspaces, GitWorkspacesConfig};

#[cfg(feature = "fake")]
pub mod fake;
#[cfg(feature = "webhooks")]
pub mod webhooks;
