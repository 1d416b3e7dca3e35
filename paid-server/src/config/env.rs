//! Syntax errors, the refusal of inline secrets, and environment overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConfigError, ENV_OVERRIDES, INLINE_SECRET_KEYS};

pub(super) fn syntax_error(file: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let location = e
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {col}")
        })
        .unwrap_or_else(|| "(syntax)".into());
    ConfigError::new(file, location, format!("not valid TOML: {}", e.message().trim()))
}

pub(super) fn reject_inline_secrets(file: &Path, table: &toml::Table) -> Result<(), ConfigError> {
    let check = |section: &str, t: &toml::Table| -> Result<(), ConfigError> {
        for k in INLINE_SECRET_KEYS {
            if t.contains_key(*k) {
                let (env_key, file_key) = if section.starts_with("providers") {
                    ("key_env", "key_file")
                } else if *k == "webhook_secret" {
                    ("webhook_secret_env", "webhook_secret_file")
                } else {
                    ("token_env", "token_file")
                };
                return Err(ConfigError::new(
                    file,
                    format!("{section}.{k}"),
                    format!(
                        "secrets are never written inline; name the environment variable that holds it \
                         ({section}.{env_key}), a file ({section}.{file_key}), or store it encrypted with \
                         `paid token set`"
                    ),
                ));
            }
        }
        Ok(())
    };
    for section in ["github", "api", "keys", "proxy", "store"] {
        if let Some(toml::Value::Table(t)) = table.get(section) {
            check(section, t)?;
        }
    }
    if let Some(toml::Value::Table(providers)) = table.get("providers") {
        for (name, v) in providers {
            if let toml::Value::Table(t) = v {
                check(&format!("providers.{name}"), t)?;
            }
        }
    }
    for k in INLINE_SECRET_KEYS {
        if table.contains_key(*k) {
            return Err(ConfigError::new(
                file,
                *k,
                "secrets are never written inline; see `paid init` for the options",
            ));
        }
    }
    Ok(())
}

/// Sets `key` (dotted) in `table` from the environment variable's text,
/// typed like the key's schema expects.
pub(super) fn apply_env(
    file: &Path,
    table: &mut toml::Table,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (var, key) in ENV_OVERRIDES {
        let Some(text) = env.get(*var) else { continue };
        let bad = |reason: String| ConfigError::new(Path::new("<environment>"), *var, reason);
        let value =
            env_value(key, text).map_err(|r| bad(format!("{r} (it overrides `{key}` of {})", file.display())))?;
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or(key);
        let mut t = &mut *table;
        for p in parts {
            let entry = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = match entry {
                toml::Value::Table(inner) => inner,
                _ => return Err(bad(format!("`{p}` in {} is not a table", file.display()))),
            };
        }
        t.insert(last.to_string(), value);
    }
    Ok(())
}

pub(super) fn env_value(key: &str, text: &str) -> Result<toml::Value, String> {
    let text = text.trim();
    let int = || text.parse::<i64>().map(toml::Value::Integer).map_err(|_| format!("{text:?} is not a whole number"));
    let float = || text.parse::<f64>().map(toml::Value::Float).map_err(|_| format!("{text:?} is not a number"));
    match key {
        "keys.previous_key_files" | "docker.endpoints" => Ok(toml::Value::Array(
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| toml::Value::String(s.into())).collect(),
        )),
        k if k.ends_with("_percent") => float(),
        "api.metrics_auth" => match text {
            "true" | "1" => Ok(toml::Value::Boolean(true)),
            "false" | "0" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("{text:?} is not true or false")),
        },
        k if k.ends_with("_secs")
            || k.ends_with("_ms")
            || k.ends_with("_bytes")
            || k.ends_with("concurrency")
            || k.ends_with("max_iterations") =>
        {
            int()
        }
        _ => Ok(toml::Value::String(text.to_string())),
    }
}

pub(super) fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { base.join(p) }
}

pub(super) fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

pub(super) fn secs(v: Option<u64>, default: u64) -> Duration {
    Duration::from_secs(v.unwrap_or(default))
}
