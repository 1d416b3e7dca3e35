//! GitHub webhooks in `paid serve`: the `paid-github` receiver, mounted at
//! `POST /webhooks/github` when a webhook secret is configured
//! (`github.webhook_secret_env` or `github.webhook_secret_file`; never
//! inline).
//!
//! The receiver verifies `X-Hub-Signature-256` (a bad or missing signature
//! gets `401` and nothing else happens) and deduplicates by delivery id. A
//! verified event only *nudges* the poller, which does the work as on its
//! interval (one task, so a nudge never races a scheduled poll):
//!
//! - `issues`, `issue_comment`: poll that project now;
//! - `pull_request`, `pull_request_review`, `check_run`: read its pull
//!   requests' feedback now (`Engine::follow_up`).
//!
//! Nothing from the payload but the repository name is used: the poll and
//! the follow-up read the forge and apply the trust policy as always.
//! Polling stays the fallback when a delivery is lost.

use std::sync::Arc;

use paid_core::{ProjectId, Store, StoreExt};
use paid_github::webhooks::{WebhookEvent, WebhookKind, WebhookReceiver};
use secrecy::SecretString;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::{Config, ConfigError};

/// Where the receiver is mounted.
pub const PATH: &str = "/webhooks/github";

/// Deliveries waiting for the poller; more get `503` and GitHub redelivers.
const QUEUE: usize = 256;

/// What a webhook asks the poller to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nudge {
    /// Poll the project's issues.
    Poll(ProjectId),
    /// Read the feedback on the project's pull requests.
    FollowUp(ProjectId),
}

/// The webhook secret the configuration names: the file, else the
/// environment variable. `None` when neither is configured (webhooks off).
pub fn secret(config: &Config) -> Result<Option<SecretString>, ConfigError> {
    let err = |key: &str, reason: String| ConfigError { file: config.file.clone(), key: key.into(), reason };
    let (text, key) = match (&config.github.webhook_secret_file, &config.github.webhook_secret_env) {
        (Some(f), _) => (
            std::fs::read_to_string(f)
                .map_err(|e| err("github.webhook_secret_file", format!("cannot read {}: {e}", f.display())))?,
            "github.webhook_secret_file",
        ),
        (None, Some(var)) => (
            std::env::var(var)
                .map_err(|_| err("github.webhook_secret_env", format!("environment variable {var} is not set")))?,
            "github.webhook_secret_env",
        ),
        (None, None) => return Ok(None),
    };
    let text = text.trim();
    if text.len() < 16 {
        return Err(err(key, "the webhook secret is shorter than 16 characters".into()));
    }
    Ok(Some(SecretString::from(text.to_string())))
}

/// The receiver to mount at [`PATH`], and the nudges its verified events
/// become (for the poller). Runs a small task until the receiver is dropped.
pub fn start(secret: SecretString, store: Arc<dyn Store>) -> (WebhookReceiver, mpsc::Receiver<Nudge>) {
    let (events_tx, events) = mpsc::channel(QUEUE);
    let (nudges_tx, nudges) = mpsc::channel(QUEUE);
    tokio::spawn(translate(events, nudges_tx, store));
    (WebhookReceiver::new(secret, events_tx), nudges)
}

async fn translate(mut events: mpsc::Receiver<WebhookEvent>, nudges: mpsc::Sender<Nudge>, store: Arc<dyn Store>) {
    while let Some(event) = events.recv().await {
        let Some(nudge) = nudge_for(store.as_ref(), &event).await else { continue };
        info!(delivery = %event.delivery, kind = ?event.kind, ?nudge, "webhook: acting now instead of at the next poll");
        if nudges.send(nudge).await.is_err() {
            return; // the poller stopped
        }
    }
}

/// The nudge for a verified event: by kind, for the project of its
/// repository (`None` for repositories Paid does not manage).
pub async fn nudge_for(store: &dyn Store, event: &WebhookEvent) -> Option<Nudge> {
    let repo = event.repo.as_ref()?;
    let project = match store.project_by_repo(repo).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "webhook: cannot list projects; the next poll catches up");
            return None;
        }
    };
    let Some(project) = project else {
        debug!(%repo, "webhook for a repository that is not a project; ignored");
        return None;
    };
    Some(match event.kind {
        WebhookKind::Issues | WebhookKind::IssueComment => Nudge::Poll(project.id),
        _ => Nudge::FollowUp(project.id),
    })
}
