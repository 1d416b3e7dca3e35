//! `paid project …`: add, list, remove.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use paid_api::{ApiClient, ClientError, NewProject, ProjectView};

use super::{Global, Out, images, mirror, one_line};
use paid_server::config::Config;

/// `paid project add`.
#[derive(Debug, Args)]
pub struct AddProject {
    /// owner/repo.
    pub repo: String,
    /// Clone URL (default https://github.com/owner/repo.git).
    #[arg(long)]
    pub clone_url: Option<String>,
    /// Target branch.
    #[arg(long)]
    pub branch: Option<String>,
    /// Trigger label (repeatable; default paid-build).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Trusted author (repeatable, at least one).
    #[arg(long = "author")]
    pub authors: Vec<String>,
    /// Verify command (repeatable).
    #[arg(long)]
    pub verify: Vec<String>,
    /// Forbidden path the project allows (repeatable).
    #[arg(long = "allow-path")]
    pub allowed_paths: Vec<String>,
    /// Agent kind.
    #[arg(long)]
    pub agent: Option<String>,
    /// Sandbox image.
    #[arg(long)]
    pub image: Option<String>,
    /// Cost cap per run, USD (enforced by the metering proxy).
    #[arg(long)]
    pub budget_usd_per_run: Option<f64>,
    /// Cost cap per month for the project, USD.
    #[arg(long)]
    pub budget_usd_per_month: Option<f64>,
    /// Also make the project's mirror clone now, on this machine, under
    /// the config's data_dir (shows the transfer's progress).
    #[arg(long)]
    pub clone: bool,
}

/// `paid project …`.
#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    /// Add a project.
    Add(Box<AddProject>),
    /// List projects.
    List,
    /// Remove a project (owner/repo).
    Remove {
        /// owner/repo.
        repo: String,
    },
}

/// Runs `paid project …`.
pub async fn project(client: &ApiClient, cmd: ProjectCmd, global: &Global, out: Out) -> Result<ExitCode, ClientError> {
    match cmd {
        ProjectCmd::List => Ok(out.success(&client.projects().await?, |projects| {
            println!("{:<32} {:<8} {:<16} {:<24} TRIGGER", "REPO", "SOURCE", "AGENT", "AUTHORS");
            for p in projects {
                let source = match p.source {
                    paid_api::ProjectSource::Config => "config",
                    paid_api::ProjectSource::Api => "api",
                };
                println!(
                    "{:<32} {:<8} {:<16} {:<24} {}",
                    p.project.repo.to_string(),
                    source,
                    p.project.agent,
                    p.project.allowed_authors.join(","),
                    p.project.trigger_labels.join(",")
                );
            }
        })),
        ProjectCmd::Add(add) => {
            let AddProject {
                repo,
                clone_url,
                branch,
                labels,
                authors,
                verify,
                allowed_paths,
                agent,
                image,
                budget_usd_per_run,
                budget_usd_per_month,
                clone,
            } = *add;
            let mut new = NewProject::new(repo, authors);
            new.clone_url = clone_url;
            new.default_branch = branch;
            new.trigger_labels = (!labels.is_empty()).then_some(labels);
            new.verify = verify;
            new.allowed_paths = allowed_paths;
            new.agent = agent;
            new.image = image;
            new.budget_usd_per_run = budget_usd_per_run;
            new.budget_usd_per_month = budget_usd_per_month;
            let mut added = client.add_project(&new).await?;
            if clone {
                added.data.mirror = Some(clone_mirror(global, &added.data, out).await?);
            }
            Ok(out.success(&added, |p| {
                println!("added {} ({})", p.project.repo, p.project.id);
                if let Some(m) = &p.mirror {
                    println!("cloned into {} ({} objects)", m["path"].as_str().unwrap_or("-"), m["objects"]);
                }
            }))
        }
        ProjectCmd::Remove { repo } => {
            Ok(out.success(&client.remove_project(&repo).await?, |r| println!("removed {}", r.removed)))
        }
    }
}

/// The mirror clone of `paid project add --clone`, for the project the API
/// just added.
async fn clone_mirror(global: &Global, added: &ProjectView, out: Out) -> Result<serde_json::Value, ClientError> {
    let failed = |m: String| ClientError::Transport(format!("the project was added, but cloning failed: {m}"));
    let config = Config::load(&global.config).map_err(|e| failed(e.to_string()))?;
    let pb = images::progress_bar(out.json);
    let report = mirror::clone(&config, &added.project, &pb).await.map_err(|e| failed(one_line(&e)))?;
    serde_json::to_value(report).map_err(|e| failed(e.to_string()))
}
