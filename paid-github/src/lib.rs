//! GitHub for Paid: the [`Forge`](paid_core::Forge) on GitHub's REST API
//! ([`GitHubForge`]) and the [`Workspaces`](paid_core::Workspaces) on git
//! ([`GitWorkspaces`]): mirror clones, one worktree per run, host-side push.
//! With the `fake` feature, `fake::FakeGitHub` is an in-process GitHub for
//! tests whose responses follow recorded sessions. With the `webhooks`
//! feature, `webhooks::WebhookReceiver` is an axum router that verifies and
//! forwards GitHub webhook deliveries.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use paid_core::{Forge, PollRequest, RepoRef, Workspaces};
//! use paid_github::{GitHubConfig, GitHubForge, GitWorkspaces, GitWorkspacesConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let token: secrecy::SecretString = std::env::var("GITHUB_TOKEN")?.into();
//! let forge: Arc<dyn Forge> = Arc::new(GitHubForge::new(GitHubConfig::new().token(token.clone()))?);
//! let workspaces: Arc<dyn Workspaces> =
//!     Arc::new(GitWorkspaces::new(GitWorkspacesConfig::new("/var/lib/paid/git").token(token)));
//!
//! let issues = forge
//!     .poll_triggered(&PollRequest { repo: RepoRef::new("octo", "app"), labels: vec!["paid-build".into()] })
//!     .await?;
//! println!("{} issues to work on", issues.len());
//! # let _ = workspaces;
//! # Ok(())
//! # }
//! ```

mod error;
mod forge;
mod workspaces;

pub use error::{Error, Result, ValidationError};
pub use forge::{
    ClientStats, DEFAULT_BASE_URI, FailingCheck, FeedbackRequest, GitHubConfig, GitHubForge, PrFeedback, PrState,
    RateLimit, RetryPolicy, Review, ReviewComment, ReviewThread, Votes,
};
pub use workspaces::{CloneProgress, GitWorkspaces, GitWorkspacesConfig};

#[cfg(feature = "fake")]
pub mod fake;
#[cfg(feature = "webhooks")]
pub mod webhooks;
