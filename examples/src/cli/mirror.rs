//! `paid project add --clone`: makes the project's mirror clone under
//! `data_dir` right away, on this machine, with a transfer progress bar, so
//! the project's first run does not wait for it. The daemon finds the
//! mirror where it keeps mirrors and fetches into it before each run.

use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use paid_core::Project;
use paid_github::{CloneProgress, GitWorkspaces, GitWorkspacesConfig};
use serde::Serialize;

use paid_server::config::Config;
use paid_server::vault::{Vault, load_keyring};

/// What the clone did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MirrorReport {
    /// The mirror.
    pub path: std::path::PathBuf,
    /// Objects received.
    pub objects: usize,
    /// Bytes received.
    pub bytes: usize,
    /// How long it took.
    pub seconds: f64,
}

/// The forge token as the daemon would use it (stored, else file, else
/// environment); `None` when there is none or it cannot be read.
async fn token(config: &Config) -> Option<secrecy::SecretString> {
    let opened = paid_server::stores::open_store(&config.store, config.store_schema.as_deref()).await.ok()?;
    let keyring = load_keyring(&config.keys).ok().flatten();
    let clock: Arc<dyn paid_core::Clock> = Arc::new(paid_core::SystemClock);
    let vault = Vault::new(opened.secrets.clone(), opened.no_secrets_reason.clone(), keyring, clock);
    paid_server::stores::forge_token(config, &vault).await.ok().flatten()
}

/// Clones (or fetches) `project`'s mirror under `config.data_dir`, showing
/// the transfer on `pb`.
pub async fn clone(config: &Config, project: &Project, pb: &ProgressBar) -> anyhow::Result<MirrorReport> {
    let started = Instant::now();
    let mut wc = GitWorkspacesConfig::new(config.data_dir.join("workspaces"))
        .forge_origin(paid_github::WebOrigin::from_api_base(&config.github.api_url)?);
    if let Some(t) = token(config).await {
        wc = wc.token(t);
    }
    let workspaces = GitWorkspaces::new(wc);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} objects {elapsed:>4} {msg}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(format!("cloning {}", project.repo));
    let last = Arc::new(std::sync::Mutex::new(CloneProgress::default()));
    let path = {
        let (pb, last) = (pb.clone(), last.clone());
        workspaces
            .ensure_mirror_with_progress(project, move |p| {
                pb.set_length(p.total_objects as u64);
                pb.set_position(p.received_objects as u64);
                pb.set_message(format!(
                    "{} KiB, {}/{} deltas",
                    p.received_bytes / 1024,
                    p.indexed_deltas,
                    p.total_deltas
                ));
                *last.lock().unwrap_or_else(|e| e.into_inner()) = p;
            })
            .await?
    };
    pb.finish_and_clear();
    let p = *last.lock().unwrap_or_else(|e| e.into_inner());
    Ok(MirrorReport {
        path,
        objects: p.received_objects,
        bytes: p.received_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}
