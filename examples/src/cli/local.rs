//! `paid init`, `paid serve` and `paid doctor`: local, no server needed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use paid_server::config::{Config, ConfigError};
use serde::Serialize;

use super::{Global, Out, init_cli_logging, one_line};

/// What `paid init` wrote.
#[derive(Debug, Serialize)]
struct Initialized<'a> {
    created: &'a [String],
    config: &'a Path,
}

/// What `paid doctor` found.
#[derive(Debug, Serialize)]
struct DoctorReport {
    ok: bool,
    checks: Vec<paid_server::doctor::Finding>,
}

/// `paid init`: a commented paid.toml, a random API token and a master key.
pub fn init(global: &Global, force: bool, out: Out) -> ExitCode {
    let path = &global.config;
    if path.exists() && !force {
        return out.fail_msg("exists", &format!("{} exists; pass --force to overwrite it", path.display()), 1);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(path, paid_server::config::EXAMPLE)) {
        return out.fail_msg("io", &format!("cannot write {}: {e}", path.display()), 1);
    }
    let mut created = vec![path.display().to_string()];
    let token_file = dir.join("paid-api-token");
    if !token_file.exists() {
        let mut bytes = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let text = hex::encode(bytes);
        if let Err(e) = paid_server::vault::write_private(&token_file, &text) {
            return out.fail_msg("io", &format!("cannot write {}: {e}", token_file.display()), 1);
        }
        created.push(token_file.display().to_string());
    }
    let key_file = dir.join("paid-master.key");
    if !key_file.exists() {
        if let Err(e) = paid_server::vault::write_new_key(&key_file) {
            return out.fail_msg("io", &format!("cannot write {}: {e}", key_file.display()), 1);
        }
        created.push(key_file.display().to_string());
    }
    out.local(Initialized { created: &created, config: path }, |_| {
        for c in &created {
            println!("wrote {c}");
        }
        println!();
        println!("Next: edit {} (your repository, trusted authors, verify commands),", path.display());
        println!("      export GITHUB_TOKEN=… (or `paid token set github` once the daemon runs),");
        println!("      `paid doctor`, then `paid serve`.");
    })
}

/// `paid serve`: the server, until SIGTERM or SIGINT.
pub async fn serve(global: &Global, ready_file: Option<&Path>, out: Out) -> ExitCode {
    let config = match Config::load(&global.config) {
        Ok(c) => c,
        Err(e) => {
            init_cli_logging();
            return out.config_error(&e);
        }
    };
    paid_server::logging::init(&config.log);
    let mut builder = paid_server::Server::builder(config);
    if let Some(path) = ready_file {
        builder = builder.ready_file(path);
    }
    match paid_server::server::serve_with(builder).await {
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

/// Runs every check and prints the findings. Exit 1 when one failed.
pub async fn doctor(config_path: &Path, json_out: bool) -> ExitCode {
    let pb =
        if json_out || !std::io::stderr().is_terminal() { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(120));
    let progress = {
        let pb = pb.clone();
        move |m: String| pb.set_message(m)
    };
    let findings = paid_server::doctor::checks(config_path, &progress).await;
    pb.finish_and_clear();
    let failed = findings.iter().any(|x| x.status == "fail");
    if json_out {
        return Out { json: true }.local(DoctorReport { ok: !failed, checks: findings }, |_| {});
    } else {
        for x in &findings {
            let mark = match x.status {
                "ok" => "ok  ",
                "warn" => "warn",
                _ => "FAIL",
            };
            println!("[{mark}] {:<14} {}", x.check, x.message);
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
