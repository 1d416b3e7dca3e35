//! Provider clients on reqwest, one module per wire format.
//!
//! Each module holds that provider's request, response and stream event types
//! with their exact field names, its [`LlmProvider`](paid_core::LlmProvider)
//! client, and the small facts the proxy needs about it (which header carries
//! the key, which paths exist, what its error bodies look like).
//!
//! Base URLs never include the API version: `https://api.anthropic.com`,
//! `https://api.openai.com`, `https://generativelanguage.googleapis.com`;
//! for an OpenAI-compatible server, whatever precedes `/v1/chat/completions`
//! (`http://localhost:11434` for Ollama, `https://openrouter.ai/api`).

pub mod anthropic;
pub mod compatible;
pub mod gemini;
pub mod openai;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::stream::{BoxStream, StreamExt};
use paid_core::ChatEvent;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorClass, parse_retry_after};

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Anthropic Messages (`POST /v1/messages`).
    Anthropic,
    /// OpenAI Chat Completions (`POST /v1/chat/completions`).
    #[serde(rename = "openai")]
    OpenAi,
    /// Google Gemini (`POST /v1beta/models/{model}:generateContent`).
    Gemini,
    /// An OpenAI-compatible server (Ollama, vLLM, OpenRouter): the OpenAI
    /// format, `max_tokens` instead of `max_completion_tokens`, key optional.
    Compatible,
}

impl ProviderKind {
    /// The `snake_case` name, also the default provider name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAi => "openai",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Compatible => "compatible",
        }
    }

    /// The public API's base URL (none for compatible servers).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::OpenAi => Some("https://api.openai.com"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com"),
            ProviderKind::Compatible => None,
        }
    }

    /// Whether this kind speaks the OpenAI wire format.
    pub fn is_openai_format(self) -> bool {
        matches!(self, ProviderKind::OpenAi | ProviderKind::Compatible)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to reach one provider.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The name usage is recorded and priced under (`anthropic`, `openrouter`, ...).
    pub name: String,
    /// Base URL without the API version (see the module docs).
    pub base_url: String,
    /// The API key. Optional only for compatible servers that need none.
    pub api_key: Option<SecretString>,
    /// Limit on a whole non-streaming request, and on receiving the response
    /// head of a streaming one.
    pub timeout: Duration,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ProviderConfig {
    /// A provider named after `kind`, at `base_url`, with `api_key`.
    pub fn new(kind: ProviderKind, base_url: impl Into<String>, api_key: Option<SecretString>) -> Self {
        Self {
            name: kind.as_str().to_string(),
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key,
            timeout: Duration::from_secs(600),
        }
    }

    /// The public API of `kind` with `api_key`.
    ///
    /// For [`ProviderKind::Compatible`], which has no public API, this gives
    /// an Ollama server on localhost.
    pub fn public(kind: ProviderKind, api_key: SecretString) -> Self {
        Self::new(kind, kind.default_base_url().unwrap_or(compatible::OLLAMA_BASE_URL), Some(api_key))
    }

    /// The same, under another name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The same, with another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// An HTTP client for talking to providers: rustls with the ring crypto
/// provider and the platform's certificate verifier, HTTP/1.1, no
/// compression (so streams can be metered as they pass), and no redirects:
/// requests carry API keys, and reqwest would resend headers such as
/// `x-api-key` or `x-goog-api-key` to wherever a redirect points (it only
/// strips `Authorization` and cookies when the host changes). A redirect
/// comes back as the 3xx answer it is.
pub fn http_client() -> Result<reqwest::Client, Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let config_err = |message: String| Error::Config { what: "TLS".into(), message };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(e.to_string()))?
        .with_platform_verifier()
        .map_err(|e| config_err(format!("cannot load the platform's root certificates: {e}")))?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| config_err(format!("cannot build the HTTP client: {e}")))
}

/// Sends a request; a non-2xx answer becomes [`Error::Api`], classified and
/// carrying the provider's message and `retry-after`.
pub(crate) async fn send(provider: &str, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
    let resp = rb.send().await.map_err(|e| http_error(provider, e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after =
        resp.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let body = resp.text().await.unwrap_or_default();
    Err(Error::Api {
        provider: provider.to_string(),
        status: status.as_u16(),
        class: ErrorClass::from_http(status.as_u16(), &body),
        message: error_message(&body),
        retry_after,
    })
}

/// A transport error, with any URL removed.
pub(crate) fn http_error(provider: &str, e: reqwest::Error) -> Error {
    Error::Http { provider: provider.to_string(), source: e.without_url() }
}

/// The human message inside any of the providers' error bodies.
pub(crate) fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let msg = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message").or_else(|| v.pointer("/message")).and_then(|m| m.as_str()).map(str::to_string)
    });
    match msg {
        Some(m) => m,
        None => body.chars().take(500).collect(),
    }
}

/// Reads a JSON response body.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    provider: &str,
    resp: reqwest::Response,
) -> Result<T, Error> {
    let bytes = resp.bytes().await.map_err(|e| http_error(provider, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Decode { provider: provider.to_string(), message: format!("{e} in {}", preview(&bytes)) })
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
}

/// Turns a provider's SSE events into [`ChatEvent`]s.
pub(crate) trait StreamDecoder: Send + 'static {
    /// Handles one event, pushing what it completes.
    fn on_event(&mut self, event: &Event, out: &mut Vec<ChatEvent>) -> Result<(), Error>;
    /// The stream ended; pushes the final [`ChatEvent::Done`] if not yet sent.
    fn on_end(&mut self, out: &mut Vec<ChatEvent>) -> Result<(), Error>;
}

struct DecodeState<D> {
    provider: String,
    events: BoxStream<'static, Result<Event, Error>>,
    pending: VecDeque<paid_core::Result<ChatEvent>>,
    decoder: D,
    finished: bool,
}

/// Decodes an SSE response with `decoder`, event by event as they arrive.
pub(crate) fn decode_stream<D: StreamDecoder>(
    provider: &str,
    resp: reqwest::Response,
    decoder: D,
) -> BoxStream<'static, paid_core::Result<ChatEvent>> {
    let name = provider.to_string();
    let events = resp
        .bytes_stream()
        .eventsource()
        .map(move |r| {
            r.map_err(|e| Error::Decode { provider: name.clone(), message: format!("broken event stream: {e}") })
        })
        .boxed();
    let state =
        DecodeState { provider: provider.to_string(), events, pending: VecDeque::new(), decoder, finished: false };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.finished {
                return None;
            }
            let mut out = Vec::new();
            let step = match st.events.next().await {
                Some(Ok(ev)) => st.decoder.on_event(&ev, &mut out),
                Some(Err(e)) => Err(e),
                None => {
                    st.finished = true;
                    st.decoder.on_end(&mut out)
                }
            };
            st.pending.extend(out.into_iter().map(Ok));
            if let Err(e) = step {
                tracing::debug!(provider = %st.provider, error = %e, "stream ended with an error");
                st.pending.push_back(Err(e.into()));
                st.finished = true;
            }
        }
    })
    .boxed()
}

/// Joins consecutive messages of the same wire role.
pub(crate) fn push_merged<M>(out: &mut Vec<M>, msg: M, same_role: impl Fn(&M, &M) -> bool, merge: impl Fn(&mut M, M)) {
    match out.last_mut() {
        Some(last) if same_role(last, &msg) => merge(last, msg),
        _ => out.push(msg),
    }
}

/// Maps a provider's finish reason onto the normalized names
/// (`end_turn`, `tool_use`, `max_tokens`, ...).
pub(crate) fn normalize_stop_reason(raw: &str) -> String {
    match raw {
        "stop" | "STOP" | "end_turn" | "stop_sequence" => "end_turn".into(),
        "tool_calls" | "function_call" | "tool_use" => "tool_use".into(),
        "length" | "MAX_TOKENS" | "max_tokens" => "max_tokens".into(),
        other => other.to_ascii_lowercase(),
    }
}
