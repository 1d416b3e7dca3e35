//! `paid doctor`: is this machine ready to run `paid serve`?

mod sandbox;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use paid_core::SandboxRuntime;
use paid_runtime_docker::DockerRuntime;
use serde::Serialize;

use crate::config::Config;
use crate::vault::{Vault, load_keyring};

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What was checked.
    pub check: String,
    /// `ok`, `warn` or `fail`.
    pub status: &'static str,
    /// What was found, and what to do.
    pub message: String,
}

fn f(check: &str, status: &'static str, message: impl Into<String>) -> Finding {
    Finding { check: check.into(), status, message: message.into() }
}

/// Runs every check; `progress` is told what is being checked.
pub async fn checks(config_path: &Path, progress: &(dyn Fn(String) + Send + Sync)) -> Vec<Finding> {
    let mut out = Vec::new();
    progress("reading the configuration".into());
    let config = match Config::load(config_path) {
        Ok(c) => {
            out.push(f("config", "ok", format!("{} ({} projects)", config_path.display(), c.projects.len())));
            c
        }
        Err(e) => {
            out.push(f("config", "fail", e.to_string()));
            return out;
        }
    };

    progress("connecting to Docker".into());
    let mut images_ok = false;
    match DockerRuntime::connect(config.docker.clone()).await {
        Ok(rt) => {
            out.push(f("docker", "ok", format!("reachable at {}", rt.config().endpoint_display())));
            let images: BTreeSet<&str> = config.projects.iter().map(|p| p.image.as_str()).collect();
            images_ok = true;
            for image in images {
                progress(format!("looking for image {image}"));
                match rt.ensure_image(image).await {
                    Ok(()) => out.push(f("image", "ok", format!("{image} present"))),
                    Err(e) => {
                        images_ok = false;
                        out.push(f("image", "fail", e.to_string()))
                    }
                }
            }
        }
        Err(e) => out.push(f("docker", "fail", e.to_string())),
    }

    progress("opening the store".into());
    let opened = match crate::stores::open_store(&config.store, config.store_schema.as_deref()).await {
        Ok(o) => match o.store.projects().await {
            Ok(p) => {
                out.push(f("store", "ok", format!("{} opens ({} projects stored)", config.store, p.len())));
                Some(o)
            }
            Err(e) => {
                out.push(f("store", "fail", e.to_string()));
                None
            }
        },
        Err(e) => {
            out.push(f("store", "fail", crate::one_line(&e)));
            None
        }
    };

    progress("loading the master key".into());
    let keyring = match load_keyring(&config.keys) {
        Ok(Some(k)) => {
            out.push(f("master key", "ok", format!("loaded, id {}", k.current().id())));
            Some(k)
        }
        Ok(None) => {
            out.push(f("master key", "warn", "none configured: `paid token set` will refuse to store secrets"));
            None
        }
        Err(e) => {
            out.push(f("master key", "fail", e.to_string()));
            None
        }
    };
    let clock: std::sync::Arc<dyn paid_core::Clock> = std::sync::Arc::new(paid_core::SystemClock);
    let vault = Vault::new(opened.as_ref().and_then(|o| o.secrets.clone()), "no secrets table", keyring, clock);
    match vault.verify_all().await {
        Ok(0) => {}
        Ok(n) => out.push(f("secrets", "ok", format!("{n} stored secrets decrypt"))),
        Err(e) => out.push(f("secrets", "fail", e.to_string())),
    }

    progress("checking the GitHub token".into());
    match crate::stores::forge_token(&config, &vault).await {
        Ok(Some(token)) => {
            let repos: Vec<_> = config.projects.iter().map(|p| p.repo.clone()).collect();
            match crate::github::check_token(&config.github.api_url, &token, &repos).await {
                Ok(c) => {
                    let scopes = c.scopes.as_ref().map_or("not reported".to_string(), |s| s.join(", "));
                    out.push(f(
                        "github token",
                        "ok",
                        format!(
                            "acts as {}; scopes: {scopes}; {} repositories reachable{}",
                            c.login.as_deref().unwrap_or("?"),
                            c.repositories.len(),
                            c.rate_limit_remaining.map(|n| format!("; {n} API calls left")).unwrap_or_default()
                        ),
                    ));
                    for w in c.warnings {
                        out.push(f("github token", "warn", w));
                    }
                }
                Err(e) => out.push(f("github token", "fail", e.0)),
            }
        }
        Ok(None) => out.push(f(
            "github token",
            "fail",
            format!("none: set {} or run `paid token set github`", config.github.token_env),
        )),
        Err(e) => out.push(f("github token", "fail", crate::one_line(&e))),
    }

    progress("checking the proxy".into());
    let proxy_listening = listening(config.proxy.bind).await;
    match proxy_listening {
        true => out.push(f("proxy", "ok", format!("listening on {}", config.proxy.bind))),
        false if config.providers.is_empty() => {
            out.push(f("proxy", "ok", "no providers configured: the proxy is not needed"));
        }
        _ => out.push(f(
            "proxy",
            "warn",
            format!(
                "nothing listens on {}; `paid serve` starts the metering proxy when [providers] are \
                 configured, and agents that need a model provider reach them only through it",
                config.proxy.bind
            ),
        )),
    }
    for (name, p) in &config.providers {
        let found = match (&p.key_file, &p.key_env) {
            (Some(file), _) => std::fs::metadata(file).is_ok(),
            (None, Some(var)) => std::env::var(var).is_ok_and(|v| !v.trim().is_empty()),
            (None, None) => false,
        };
        let stored = vault.list().await.unwrap_or_default().iter().any(|m| m.name == format!("provider.{name}"));
        let (status, msg) = if found || stored {
            ("ok", "key available")
        } else {
            ("warn", "key not found (variable unset or file missing)")
        };
        out.push(f(&format!("provider {name}"), status, msg));
    }

    if images_ok {
        let store = opened.as_ref().map(|o| o.store.clone());
        out.extend(sandbox::checks(&config, store, &vault, proxy_listening, progress).await);
    }

    let mut api = config.api.bind;
    if api.ip().is_unspecified() {
        api.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    match listening(api).await {
        true => out.push(f("daemon", "ok", format!("an API listens on {api}"))),
        false => out.push(f("daemon", "warn", format!("no daemon on {api}; start it with `paid serve`"))),
    }
    out
}

/// Whether something accepts a TCP connection on `addr` within 2 s.
async fn listening(addr: std::net::SocketAddr) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
}
