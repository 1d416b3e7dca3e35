//! The CLI's side of the HTTP API.

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// A failed call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The API answered with an error envelope.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The message.
        message: String,
        /// The whole envelope, for `--json`.
        body: Value,
    },
    /// The daemon could not be reached, or answered something else.
    #[error("{0}")]
    Transport(String),
}

impl ClientError {
    /// The error code (`transport` for transport errors).
    pub fn code(&self) -> &str {
        match self {
            ClientError::Api { code, .. } => code,
            ClientError::Transport(_) => "transport",
        }
    }

    /// The envelope to print with `--json`.
    pub fn envelope(&self) -> Value {
        match self {
            ClientError::Api { body, .. } => body.clone(),
            ClientError::Transport(m) => serde_json::json!({
                "error": { "code": "transport", "message": m, "details": {} },
                "meta": { "request_id": null },
            }),
        }
    }
}

/// Talks to `paid serve`.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<SecretString>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl ApiClient {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:8700`).
    pub fn new(base: impl Into<String>, token: Option<SecretString>) -> anyhow::Result<Self> {
        Ok(Self { http: super::github::http_client()?, base: base.into().trim_end_matches('/').to_string(), token })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /api/v1{path}`: the whole envelope.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// Sends a request to `/api/v1{path}`; returns the whole envelope.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose_secret());
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            ClientError::Transport(format!(
                "cannot reach the paid daemon at {}: {e}; is `paid serve` running?",
                self.base
            ))
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| ClientError::Transport(format!("reading the answer: {e}")))?;
        let value: Value = serde_json::from_str(&text).map_err(|_| {
            ClientError::Transport(format!(
                "{url} answered {status} with non-JSON: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let code = value.pointer("/error/code").and_then(Value::as_str).unwrap_or("error").to_string();
        let mut message =
            value.pointer("/error/message").and_then(Value::as_str).unwrap_or("request failed").to_string();
        if status == 401 {
            message = format!("{message}: the API token is missing or wrong (api.token_file / PAID_API_TOKEN)");
        }
        Err(ClientError::Api { status, code, message, body: value })
    }
}
