//! `/api/v1/secrets` and `/api/v1/keys/rotate`: encrypted secrets.
//!
//! `/keys/rotate` reads the new key from a file on the daemon's machine: a
//! file inside the data directory only ([`inside_data_dir`]). Files
//! elsewhere (`keys.master_key_file`, `keys.previous_key_files`) are named
//! by the operator in the configuration, never by a request.

use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use paid_api::{PutSecret, RotateKey, Rotated, SecretStored, Secrets, TokenValidation};
use paid_core::RepoRef;
use secrecy::SecretString;

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiResult, ok};

// ---- secrets ------------------------------------------------------------------

pub(crate) async fn list_secrets(State(state): State<Arc<ApiState>>) -> ApiResult {
    let secrets = state.vault.list().await?;
    ok(StatusCode::OK, Secrets { master_key_id: state.vault.key_id().await, secrets })
}

pub(crate) async fn put_secret(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PutSecret>,
) -> ApiResult {
    crate::vault::check_name(&name)?;
    use secrecy::ExposeSecret;
    let value = SecretString::from(body.value.trim().to_string());
    drop(body);
    if value.expose_secret().is_empty() || value.expose_secret().chars().any(char::is_whitespace) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "the value is empty or contains whitespace",
        ));
    }
    let mut validation = None;
    if name == "github" {
        let repos: Vec<RepoRef> = state.store.projects().await?.into_iter().map(|p| p.repo).collect();
        let check = crate::github::check_token(&state.github_api, &value, &repos)
            .await
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "token_rejected", e.0))?;
        validation = Some(TokenValidation {
            login: check.login,
            scopes: check.scopes,
            repositories: check.repositories,
            warnings: check.warnings,
            rate_limit_remaining: check.rate_limit_remaining,
        });
    }
    let meta = state.vault.put(&name, &value).await?;
    let mut note = "stored encrypted";
    if name == "github" {
        note = match state.forge_token.reload().await {
            Ok(_) => "stored encrypted; the daemon uses the new forge token from now on",
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read the GitHub token; the daemon retries shortly");
                "stored encrypted; the daemon picks the new forge token up within a minute"
            }
        };
    }
    ok(StatusCode::OK, SecretStored { secret: meta, validation, note: note.to_string() })
}

/// `given` as a file inside `data_dir`: a relative path is taken from
/// `data_dir`; a path with a `..` component is refused outright; and the
/// file's real path (every symlink resolved) must be inside `data_dir`'s
/// real path, so a symlink cannot lead out of it. Returns the real path.
pub fn inside_data_dir(data_dir: &FsPath, given: &str) -> Result<PathBuf, String> {
    let shown = || format!("{:?}", given.chars().take(200).collect::<String>());
    let path = FsPath::new(given);
    if given.trim().is_empty() {
        return Err("no file named".into());
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{} contains `..`; name a file inside the data directory", shown()));
    }
    let root = data_dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve the data directory {}: {e}", data_dir.display()))?;
    let joined = if path.is_absolute() { path.to_path_buf() } else { root.join(path) };
    let real = joined.canonicalize().map_err(|e| format!("cannot read {}: {e}", shown()))?;
    if !real.starts_with(&root) {
        return Err(format!(
            "{} is outside the data directory {}; the API only reads files inside it: put the new key there \
             (e.g. `paid token rotate-key --new-key-file {}/new.key --generate`)",
            shown(),
            root.display(),
            root.display()
        ));
    }
    Ok(real)
}

pub(crate) async fn rotate_key(State(state): State<Arc<ApiState>>, ApiJson(body): ApiJson<RotateKey>) -> ApiResult {
    let file = inside_data_dir(&state.data_dir, &body.new_key_file).map_err(|reason| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_key_path", format!("new_key_file: {reason}"))
    })?;
    let key = crate::crypto::MasterKey::from_file(&file)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_key", e.to_string()))?;
    let report = state.vault.rotate(key).await?;
    ok(
        StatusCode::OK,
        Rotated {
            rotation: report,
            next: "point keys.master_key_file at the new key and keep the old one in keys.previous_key_files until every daemon restarted".into(),
        },
    )
}
