//! The `paid` command line: every subcommand but `demo`.
//!
//! `init`, `serve` and `doctor` work locally; everything else talks to the
//! daemon's HTTP API (`--api-url`, default from `paid.toml`'s `api.bind`,
//! with the bearer token from `--token-file`, `PAID_API_TOKEN` or
//! `paid.toml`). With `--json` each command prints one JSON document: the
//! API's envelope, `{"data": …, "meta": …}` on success and
//! `{"error": {"code", "message", "details"}, "meta": …}` on failure.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::client::{ApiClient, ClientError};
use super::config::{Config, ConfigError};

/// Options every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The configuration file.
    #[arg(long, global = true, env = "PAID_CONFIG", default_value = "paid.toml")]
    pub config: PathBuf,
    /// The daemon's API (default: from the config's api.bind).
    #[arg(long, global = true, env = "PAID_API_URL")]
    pub api_url: Option<String>,
    /// A file holding the API token (default: PAID_API_TOKEN, then the config).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

/// The subcommands besides `demo`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented paid.toml, a random API token and a master key.
    Init {
        /// Overwrite an existing paid.toml.
        #[arg(long)]
        force: bool,
    },
    /// Run the daemon: poller, workers, HTTP API, reaper, disk guard.
    Serve,
    /// Check Docker, images, the store, keys, the forge token and the proxy.
    Doctor,
    /// Sandbox images.
    #[command(subcommand)]
    Images(ImagesCmd),
    /// Projects.
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Forge tokens and provider keys, encrypted in the database.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Queue a run for an issue now (an issue URL or owner/repo#N).
    Run {
        /// The issue.
        issue: String,
        /// Wait for the run to end, showing its progress.
        #[arg(long)]
        wait: bool,
        /// Compare these models (comma-separated, 2 to 8) in parallel
        /// sandboxes; one winner becomes the PR.
        #[arg(long, value_delimiter = ',')]
        compare: Vec<String>,
        /// How the winner of --compare is chosen: `best` (by --rank) or
        /// `human` (the run waits for `paid runs pick`).
        #[arg(long, requires = "compare", value_parser = ["best", "human"])]
        pick: Option<String>,
        /// Ranking criteria for `--pick best`, most important first
        /// (verify_passed, cost, iterations, lines_changed, files_changed,
        /// duration).
        #[arg(long, requires = "compare", value_delimiter = ',')]
        rank: Vec<String>,
    },
    /// Runs.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// Prompt versions (learning).
    #[command(subcommand)]
    Prompts(PromptsCmd),
    /// Cost per project and model, by day and month.
    Costs {
        /// Only this project (owner/repo).
        #[arg(long)]
        project: Option<String>,
    },
}

/// `paid images …`.
#[derive(Debug, Subcommand)]
pub enum ImagesCmd {
    /// Build the sandbox image (docker/agent.Dockerfile) through the Docker
    /// engine of paid.toml's [docker] section, showing the build's steps.
    Build {
        /// The tag.
        #[arg(long, default_value = super::images::DEFAULT_TAG)]
        tag: String,
        /// Agent CLIs to install from PyPI (the PIP_PACKAGES build argument).
        #[arg(long)]
        pip_packages: Option<String>,
    },
}

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

/// `paid token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Store a secret encrypted: `github`, or `provider.<name>`. The value
    /// is read from standard input unless --from-file or --from-env.
    Set {
        /// `github` or `provider.<name>`.
        name: String,
        /// Read the value from this file.
        #[arg(long, conflicts_with = "from_env")]
        from_file: Option<PathBuf>,
        /// Read the value from this environment variable.
        #[arg(long)]
        from_env: Option<String>,
    },
    /// List stored secrets (names and key ids, never values).
    List,
    /// Re-encrypt every stored secret under a new master key, without
    /// stopping the daemon.
    RotateKey {
        /// The new key file (32 bytes, base64 or hex), readable by the daemon.
        #[arg(long)]
        new_key_file: PathBuf,
        /// Write a fresh random key to --new-key-file first.
        #[arg(long)]
        generate: bool,
    },
}

/// `paid runs …`.
#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// List runs, newest first.
    List {
        /// Only this project (owner/repo).
        #[arg(long)]
        project: Option<String>,
        /// Only runs not yet ended.
        #[arg(long)]
        active: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A run: state, steps, cost, model decision.
    Show {
        /// Run id.
        id: String,
    },
    /// A run's log.
    Logs {
        /// Run id.
        id: String,
        /// Keep printing until the run ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a run: the agent is stopped and cleanup still runs.
    Cancel {
        /// Run id.
        id: String,
        /// Wait until the run has ended.
        #[arg(long)]
        wait: bool,
    },
    /// A comparison run's candidates side by side.
    Candidates {
        /// Run id.
        id: String,
    },
    /// Pick the winner of a comparison run awaiting a choice.
    Pick {
        /// Run id.
        id: String,
        /// The candidate's name (c2-model) or model.
        candidate: String,
    },
}

/// `paid prompts …`.
#[derive(Debug, Subcommand)]
pub enum PromptsCmd {
    /// List prompts.
    List,
    /// Show a prompt's versions.
    Show {
        /// Prompt slug.
        slug: String,
    },
}

/// Prints and returns exit codes in one style.
#[derive(Debug, Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn success(&self, envelope: &Value, human: impl FnOnce(&Value)) -> ExitCode {
        if self.json {
            println!("{}", serde_json::to_string_pretty(envelope).unwrap_or_default());
        } else {
            human(envelope.get("data").unwrap_or(&Value::Null));
        }
        ExitCode::SUCCESS
    }

    fn local(&self, data: Value, human: impl FnOnce(&Value)) -> ExitCode {
        let envelope = json!({ "data": data, "meta": { "request_id": null, "timestamp": chrono::Utc::now() } });
        self.success(&envelope, human)
    }

    fn fail(&self, e: &ClientError) -> ExitCode {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&e.envelope()).unwrap_or_default());
        } else {
            eprintln!("error: {e}");
        }
        ExitCode::FAILURE
    }

    fn fail_msg(&self, code: &str, message: &str, exit: u8) -> ExitCode {
        if self.json {
            let v =
                json!({ "error": { "code": code, "message": message, "details": {} }, "meta": { "request_id": null } });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            eprintln!("error: {message}");
        }
        ExitCode::from(exit)
    }

    fn config_error(&self, e: &ConfigError) -> ExitCode {
        if self.json {
            let v = json!({
                "error": {
                    "code": "invalid_config",
                    "message": e.to_string(),
                    "details": { "file": e.file, "key": e.key, "reason": e.reason },
                },
                "meta": { "request_id": null },
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            eprintln!("error: {e}");
        }
        ExitCode::from(2)
    }
}

/// Runs a subcommand.
pub async fn run(global: Global, command: Command) -> ExitCode {
    let out = Out { json: global.json };
    match command {
        Command::Init { force } => init(&global, force, out),
        Command::Serve => serve(&global, out).await,
        Command::Doctor => {
            init_cli_logging();
            super::doctor::doctor(&global.config, out.json).await
        }
        Command::Images(cmd) => {
            init_cli_logging();
            images(&global, cmd, out).await
        }
        other => {
            init_cli_logging();
            let client = match client(&global) {
                Ok(c) => c,
                Err(Err(e)) => return out.config_error(&e),
                Err(Ok(message)) => return out.fail_msg("usage", &message, 2),
            };
            remote(client, other, &global, out).await
        }
    }
}

fn init_cli_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// The API client from flags, environment and config.
fn client(global: &Global) -> Result<ApiClient, Result<String, ConfigError>> {
    let config = if global.config.exists() { Some(Config::load(&global.config).map_err(Err)?) } else { None };
    let base = match (&global.api_url, &config) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => {
            let mut addr = c.api.bind;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
        (None, None) => {
            return Err(Ok(format!("no --api-url and no {}; pass --api-url or --config", global.config.display())));
        }
    };
    let token = if let Some(f) = &global.token_file {
        Some(read_trimmed(f).map_err(|e| Ok(format!("cannot read {}: {e}", f.display())))?)
    } else if let Ok(t) = std::env::var("PAID_API_TOKEN") {
        Some(SecretString::from(t.trim().to_string()))
    } else if let Some(c) = &config {
        match &c.api.token_file {
            Some(f) => {
                Some(read_trimmed(f).map_err(|e| Ok(format!("cannot read api.token_file {}: {e}", f.display())))?)
            }
            None => std::env::var(&c.api.token_env).ok().map(|t| SecretString::from(t.trim().to_string())),
        }
    } else {
        None
    };
    ApiClient::new(base, token).map_err(|e| Ok(e.to_string()))
}

fn read_trimmed(path: &Path) -> std::io::Result<SecretString> {
    Ok(SecretString::from(std::fs::read_to_string(path)?.trim().to_string()))
}

fn init(global: &Global, force: bool, out: Out) -> ExitCode {
    let path = &global.config;
    if path.exists() && !force {
        return out.fail_msg("exists", &format!("{} exists; pass --force to overwrite it", path.display()), 1);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(path, super::config::EXAMPLE)) {
        return out.fail_msg("io", &format!("cannot write {}: {e}", path.display()), 1);
    }
    let mut created = vec![path.display().to_string()];
    let token_file = dir.join("paid-api-token");
    if !token_file.exists() {
        let mut bytes = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let text = hex::encode(bytes);
        if let Err(e) = super::vault::write_private(&token_file, &text) {
            return out.fail_msg("io", &format!("cannot write {}: {e}", token_file.display()), 1);
        }
        created.push(token_file.display().to_string());
    }
    let key_file = dir.join("paid-master.key");
    if !key_file.exists() {
        if let Err(e) = super::vault::write_new_key(&key_file) {
            return out.fail_msg("io", &format!("cannot write {}: {e}", key_file.display()), 1);
        }
        created.push(key_file.display().to_string());
    }
    out.local(json!({ "created": created, "config": path }), |_| {
        for c in &created {
            println!("wrote {c}");
        }
        println!();
        println!("Next: edit {} (your repository, trusted authors, verify commands),", path.display());
        println!("      export GITHUB_TOKEN=… (or `paid token set github` once the daemon runs),");
        println!("      `paid doctor`, then `paid serve`.");
    })
}

async fn serve(global: &Global, out: Out) -> ExitCode {
    let config = match Config::load(&global.config) {
        Ok(c) => c,
        Err(e) => {
            init_cli_logging();
            return out.config_error(&e);
        }
    };
    super::logging::init(&config.log);
    match super::serve::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigError>() {
                tracing::error!(file = %ce.file.display(), key = %ce.key, reason = %ce.reason, "invalid configuration; nothing was started");
                return out.config_error(ce);
            }
            let message = one_line(&e);
            tracing::error!(error = %message, "paid serve failed to start");
            out.fail_msg("startup_failed", &message, 1)
        }
    }
}

/// An error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if !line.contains(&cause) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&cause);
        }
    }
    line
}

fn enc(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.~/".contains(c) { c.to_string() } else { format!("%{:02X}", c as u32) }
        })
        .collect()
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("-")
}

async fn remote(client: ApiClient, command: Command, global: &Global, out: Out) -> ExitCode {
    let result = match command {
        Command::Project(cmd) => project(&client, cmd, global, out).await,
        Command::Token(cmd) => token(&client, cmd, out).await,
        Command::Run { issue, wait, compare, pick, rank } => {
            let compare = (!compare.is_empty()).then(|| json!({ "models": compare, "rule": pick, "ranking": rank }));
            trigger(&client, &issue, wait, compare, out).await
        }
        Command::Runs(cmd) => runs(&client, cmd, out).await,
        Command::Prompts(PromptsCmd::List) => {
            client.get("/prompts").await.map(|v| out.success(&v, |d| println!("{d}")))
        }
        Command::Prompts(PromptsCmd::Show { slug }) => {
            client.get(&format!("/prompts/{}", enc(&slug))).await.map(|v| out.success(&v, |d| println!("{d}")))
        }
        Command::Costs { project } => {
            let q = project.map(|p| format!("?project={}", enc(&p))).unwrap_or_default();
            client.get(&format!("/costs{q}")).await.map(|v| out.success(&v, print_costs))
        }
        Command::Init { .. } | Command::Serve | Command::Doctor | Command::Images(_) => Ok(ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| out.fail(&e))
}

async fn project(client: &ApiClient, cmd: ProjectCmd, global: &Global, out: Out) -> Result<ExitCode, ClientError> {
    match cmd {
        ProjectCmd::List => Ok(out.success(&client.get("/projects").await?, |d| {
            println!("{:<32} {:<8} {:<16} {:<24} TRIGGER", "REPO", "SOURCE", "AGENT", "AUTHORS");
            for p in d.as_array().into_iter().flatten() {
                let repo = format!("{}/{}", s(p, "/repo/owner"), s(p, "/repo/name"));
                let authors: Vec<&str> =
                    p["allowed_authors"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let labels: Vec<&str> =
                    p["trigger_labels"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                println!(
                    "{:<32} {:<8} {:<16} {:<24} {}",
                    repo,
                    s(p, "/source"),
                    s(p, "/agent"),
                    authors.join(","),
                    labels.join(",")
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
            let mut body =
                json!({ "repo": repo, "allowed_authors": authors, "verify": verify, "allowed_paths": allowed_paths });
            for (k, v) in [("clone_url", clone_url), ("default_branch", branch), ("agent", agent), ("image", image)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if !labels.is_empty() {
                body["trigger_labels"] = json!(labels);
            }
            for (k, v) in [("budget_usd_per_run", budget_usd_per_run), ("budget_usd_per_month", budget_usd_per_month)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            let mut v = client.call(Method::POST, "/projects", Some(body)).await?;
            if clone {
                let cloned = clone_mirror(global, &v["data"], out).await;
                v["data"]["mirror"] = cloned?;
            }
            Ok(out.success(&v, |d| {
                println!("added {}/{} ({})", s(d, "/repo/owner"), s(d, "/repo/name"), s(d, "/id"));
                if d["mirror"].is_object() {
                    println!("cloned into {} ({} objects)", s(d, "/mirror/path"), d["mirror"]["objects"]);
                }
            }))
        }
        ProjectCmd::Remove { repo } => {
            let v = client.call(Method::DELETE, &format!("/projects/{}", enc(&repo)), None).await?;
            Ok(out.success(&v, |d| println!("removed {}", s(d, "/removed"))))
        }
    }
}

async fn token(client: &ApiClient, cmd: TokenCmd, out: Out) -> Result<ExitCode, ClientError> {
    match cmd {
        TokenCmd::List => Ok(out.success(&client.get("/secrets").await?, |d| {
            println!("master key: {}", s(d, "/master_key_id"));
            for x in d["secrets"].as_array().into_iter().flatten() {
                println!("{:<24} key {}  v{}  {}", s(x, "/name"), s(x, "/key_id"), x["version"], s(x, "/updated_at"));
            }
        })),
        TokenCmd::Set { name, from_file, from_env } => {
            let value = match (from_file, from_env) {
                (Some(f), _) => std::fs::read_to_string(&f)
                    .map_err(|e| ClientError::Transport(format!("cannot read {}: {e}", f.display())))?,
                (None, Some(var)) => std::env::var(&var)
                    .map_err(|_| ClientError::Transport(format!("environment variable {var} is not set")))?,
                (None, None) => {
                    if std::io::stdin().is_terminal() {
                        eprintln!("paste the value, then press Ctrl-D:");
                    }
                    let mut v = String::new();
                    std::io::stdin()
                        .read_to_string(&mut v)
                        .map_err(|e| ClientError::Transport(format!("reading standard input: {e}")))?;
                    v
                }
            };
            let body = json!({ "value": value.trim() });
            let v = client.call(Method::PUT, &format!("/secrets/{}", enc(&name)), Some(body)).await?;
            Ok(out.success(&v, |d| {
                println!(
                    "stored {} encrypted under key {} (version {})",
                    s(d, "/secret/name"),
                    s(d, "/secret/key_id"),
                    d["secret"]["version"]
                );
                if let Some(login) = d.pointer("/validation/login").and_then(Value::as_str) {
                    println!("  acts as {login}");
                }
                for w in d.pointer("/validation/warnings").and_then(Value::as_array).into_iter().flatten() {
                    println!("  note: {}", w.as_str().unwrap_or_default());
                }
                println!("  {}", s(d, "/note"));
            }))
        }
        TokenCmd::RotateKey { new_key_file, generate } => {
            if generate {
                super::vault::write_new_key(&new_key_file).map_err(|e| {
                    ClientError::Transport(format!("cannot write a new key to {}: {e}", new_key_file.display()))
                })?;
            }
            let path = std::path::absolute(&new_key_file).unwrap_or(new_key_file);
            let body = json!({ "new_key_file": path });
            let v = client.call(Method::POST, "/keys/rotate", Some(body)).await?;
            Ok(out.success(&v, |d| {
                println!(
                    "re-encrypted {} secrets under key {} (was {})",
                    d["rotation"]["rotated"].as_array().map_or(0, Vec::len),
                    s(d, "/rotation/key_id"),
                    s(d, "/rotation/previous_key_id")
                );
                println!("next: {}", s(d, "/next"));
            }))
        }
    }
}

/// The mirror clone of `paid project add --clone`, for the project the API
/// just added (`data`).
async fn clone_mirror(global: &Global, data: &Value, out: Out) -> Result<Value, ClientError> {
    let failed = |m: String| ClientError::Transport(format!("the project was added, but cloning failed: {m}"));
    let config = Config::load(&global.config).map_err(|e| failed(e.to_string()))?;
    let project: paid_core::Project = serde_json::from_value(data.clone()).map_err(|e| failed(e.to_string()))?;
    let pb = super::images::progress_bar(out.json);
    let report = super::mirror::clone(&config, &project, &pb).await.map_err(|e| failed(one_line(&e)))?;
    Ok(json!(report))
}

/// `paid images build`: local, through the Docker engine (no daemon needed).
async fn images(global: &Global, cmd: ImagesCmd, out: Out) -> ExitCode {
    let ImagesCmd::Build { tag, pip_packages } = cmd;
    let docker_config = if global.config.exists() {
        match Config::load(&global.config) {
            Ok(c) => c.docker,
            Err(e) => return out.config_error(&e),
        }
    } else {
        paid_runtime_docker::DockerConfig::default()
    };
    let docker = match paid_runtime_docker::DockerRuntime::connect(docker_config).await {
        Ok(d) => d,
        Err(e) => return out.fail_msg("docker_unreachable", &format!("cannot reach Docker: {e}"), 1),
    };
    let args = pip_packages.map(|p| ("PIP_PACKAGES".to_string(), p)).into_iter().collect();
    let pb = super::images::progress_bar(out.json);
    match super::images::build(&docker, super::images::AGENT_DOCKERFILE, &tag, args, &pb).await {
        Ok(report) => out.local(json!(report), |d| {
            println!("built {} ({}) in {:.1} s, {} steps", s(d, "/image"), s(d, "/id"), d["seconds"], d["steps"])
        }),
        Err(e) => out.fail_msg("build_failed", &one_line(&e), 1),
    }
}

fn spinner(out: Out, msg: String) -> ProgressBar {
    let pb =
        if out.json || !std::io::stderr().is_terminal() { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
        pb.set_style(style);
    }
    pb.set_message(msg);
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Polls a run until it ends (or, with `until_choice`, waits for a human
/// pick), showing its state.
async fn wait_for(client: &ApiClient, id: &str, until_choice: bool, out: Out) -> Result<Value, ClientError> {
    let pb = spinner(out, format!("run {id}: waiting"));
    loop {
        let v = client.get(&format!("/runs/{id}")).await?;
        let state = s(&v, "/data/run/state").to_string();
        pb.set_message(format!("run {id}: {state}"));
        let terminal = matches!(state.as_str(), "succeeded" | "failed" | "cancelled" | "timed_out" | "budget_exceeded");
        if terminal || (until_choice && state == "awaiting_choice") {
            pb.finish_and_clear();
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn trigger(
    client: &ApiClient,
    issue: &str,
    wait: bool,
    compare: Option<Value>,
    out: Out,
) -> Result<ExitCode, ClientError> {
    let mut body = json!({ "issue_url": issue });
    if let Some(c) = compare {
        body["compare"] = c;
    }
    let v = client.call(Method::POST, "/runs", Some(body)).await?;
    if !wait {
        return Ok(
            out.success(&v, |d| println!("queued run {} for {}#{}", s(d, "/id"), s(d, "/repo"), d["issue_number"]))
        );
    }
    let id = s(&v, "/data/id").to_string();
    let done = wait_for(client, &id, true, out).await?;
    Ok(out.success(&done, |d| {
        print_run(d);
        if s(d, "/run/state") == "awaiting_choice" {
            println!("pick the winner: paid runs pick {id} <candidate>");
        }
    }))
}

async fn runs(client: &ApiClient, cmd: RunsCmd, out: Out) -> Result<ExitCode, ClientError> {
    match cmd {
        RunsCmd::List { project, active, limit } => {
            let mut q = format!("?limit={limit}");
            if active {
                q.push_str("&active=true");
            }
            if let Some(p) = project {
                q.push_str(&format!("&project={}", enc(&p)));
            }
            Ok(out.success(&client.get(&format!("/runs{q}")).await?, |d| {
                println!("{:<36}  {:<28} {:>6}  {:<16} PR", "RUN", "REPO", "ISSUE", "STATE");
                for r in d.as_array().into_iter().flatten() {
                    println!(
                        "{:<36}  {:<28} {:>6}  {:<16} {}",
                        s(r, "/id"),
                        s(r, "/repo"),
                        r["issue_number"],
                        s(r, "/state"),
                        s(r, "/pr_url")
                    );
                }
            }))
        }
        RunsCmd::Show { id } => Ok(out.success(&client.get(&format!("/runs/{}", enc(&id))).await?, print_run)),
        RunsCmd::Logs { id, follow } => logs(client, &id, follow, out).await,
        RunsCmd::Cancel { id, wait } => {
            let v = client.call(Method::POST, &format!("/runs/{}/cancel", enc(&id)), None).await?;
            if !wait {
                return Ok(out.success(&v, |d| {
                    println!("cancel requested for run {} (now {})", s(d, "/run/id"), s(d, "/run/state"))
                }));
            }
            let done = wait_for(client, &id, false, out).await?;
            Ok(out.success(&done, print_run))
        }
        RunsCmd::Candidates { id } => {
            let v = client.get(&format!("/runs/{}/candidates", enc(&id))).await?;
            Ok(out.success(&v, |d| {
                println!("run {} is {}", s(d, "/run_id"), s(d, "/state"));
                print_candidates(&d["candidates"]);
                if d["awaiting_choice"] == true {
                    println!("pick one: paid runs pick {} <candidate>", s(d, "/run_id"));
                }
            }))
        }
        RunsCmd::Pick { id, candidate } => {
            let body = json!({ "candidate": candidate });
            let v = client.call(Method::POST, &format!("/runs/{}/pick", enc(&id)), Some(body)).await?;
            Ok(out.success(&v, |d| {
                println!("picked {candidate} for run {}; it goes on to commit, push and open the PR", s(d, "/id"))
            }))
        }
    }
}

/// The side-by-side table of a comparison run's candidates.
fn print_candidates(candidates: &Value) {
    let list = candidates.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        println!("no candidates yet (they are listed once every candidate is done)");
        return;
    }
    println!(
        "{:<28} {:<24} {:<8} {:>5} {:>10} {:>6} {:>5} {:>9}  ERROR",
        "CANDIDATE", "MODEL", "VERIFY", "ITER", "COST", "LINES", "FILES", "DURATION"
    );
    for c in list {
        let cost = c["cost_micros"].as_i64().map_or_else(|| "-".to_string(), |m| format!("${:.4}", m as f64 / 1e6));
        let lines = c["lines_changed"].as_u64().map_or_else(|| "-".to_string(), |l| l.to_string());
        let verify = if c["verify_passed"] == true { "passed" } else { "failed" };
        println!(
            "{:<28} {:<24} {:<8} {:>5} {:>10} {:>6} {:>5} {:>8.1}s  {}",
            s(c, "/name"),
            s(c, "/candidate/model"),
            verify,
            c["iterations"],
            cost,
            lines,
            c["files_changed"],
            c["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            c["error"].as_str().unwrap_or("")
        );
    }
}

async fn logs(client: &ApiClient, id: &str, follow: bool, out: Out) -> Result<ExitCode, ClientError> {
    let mut after = 0u64;
    loop {
        let v = client.get(&format!("/runs/{}/logs?after={after}", enc(id))).await?;
        let chunks = v.pointer("/data/chunks").and_then(Value::as_array).cloned().unwrap_or_default();
        for c in &chunks {
            after = after.max(c["seq"].as_u64().unwrap_or(after));
            if out.json {
                println!("{}", serde_json::to_string(c).unwrap_or_default());
            } else {
                print!("{}", c["text"].as_str().unwrap_or_default());
            }
        }
        let finished = v.pointer("/data/finished").and_then(Value::as_bool).unwrap_or(true);
        if !follow || (finished && chunks.is_empty()) {
            return Ok(ExitCode::SUCCESS);
        }
        if chunks.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn print_run(d: &Value) {
    println!("run      {}", s(d, "/run/id"));
    println!("issue    {}#{} {}", s(d, "/repo"), d["run"]["issue_number"], s(d, "/issue/title"));
    println!("state    {}", s(d, "/run/state"));
    if let Some(f) = d.pointer("/run/failure").filter(|f| !f.is_null()) {
        println!("failure  {} at {}: {}", s(f, "/code"), s(f, "/step"), s(f, "/message"));
    }
    println!("branch   {}", s(d, "/run/branch"));
    println!("pr       {}", s(d, "/run/pr_url"));
    println!("model    {} ({})", s(d, "/model_decision/model"), s(d, "/model_decision/selector"));
    let cost = &d["cost"];
    println!(
        "cost     ${:.4} from {} usage records{}",
        cost["usd"].as_f64().unwrap_or(0.0),
        cost["records"],
        if cost["unpriced_records"].as_u64().unwrap_or(0) > 0 { " (some unpriced)" } else { "" }
    );
    if d["candidates"].is_array() {
        println!("candidates");
        print_candidates(&d["candidates"]);
    }
    println!("steps");
    for st in d["steps"].as_array().into_iter().flatten() {
        println!(
            "  {:>3} {:<16} {:<8} {}",
            st["seq"],
            s(st, "/step"),
            s(st, "/status"),
            st["error"].as_str().unwrap_or("")
        );
    }
}

fn print_costs(d: &Value) {
    for (title, key) in [("by month", "by_month"), ("by day", "by_day")] {
        println!("{title}");
        println!("  {:<10} {:<28} {:<24} {:>10} {:>8} {:>10}", "PERIOD", "REPO", "MODEL", "USD", "CALLS", "TOKENS");
        for r in d[key].as_array().into_iter().flatten() {
            println!(
                "  {:<10} {:<28} {:<24} {:>10.4} {:>8} {:>10}",
                s(r, "/period"),
                s(r, "/repo"),
                s(r, "/model"),
                r["usd"].as_f64().unwrap_or(0.0),
                r["requests"],
                r["tokens"]
            );
        }
    }
    println!("total    ${:.4}", d["total"]["usd"].as_f64().unwrap_or(0.0));
}
