//! A fake upstream speaking each provider's exact wire format (feature `fake`).
//!
//! One server answers all three APIs at their real paths:
//! `POST /v1/messages` (Anthropic), `POST /v1/chat/completions` (OpenAI and
//! compatible), `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` (Gemini). Responses are scripted: a
//! queue of [`Reply`]s is consumed one per request, then the default reply
//! answers. A reply may be an error (with `retry-after`), and may delay its
//! response head and the gaps between stream events. Every request is
//! recorded with its headers, so tests can assert which key arrived.
//!
//! ```
//! use paid_llm::fake::{Canned, FakeUpstream, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let fake = FakeUpstream::start().await.unwrap();
//! fake.push(Reply::error(429, "slow down").retry_after(1));
//! fake.push(Reply::Ok(Canned::text("hello")));
//! let http = paid_llm::providers::http_client().unwrap();
//! let url = format!("{}/v1/chat/completions", fake.url());
//! let body = serde_json::json!({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]});
//! let first = http.post(&url).json(&body).send().await.unwrap();
//! assert_eq!(first.status(), 429);
//! assert_eq!(first.headers()["retry-after"], "1");
//! let second: serde_json::Value = http.post(&url).json(&body).send().await.unwrap().json().await.unwrap();
//! assert_eq!(second["choices"][0]["message"]["content"], "hello");
//! assert_eq!(fake.received().len(), 2);
//! # }
//! ```

mod anthropic;
mod gemini;
mod openai;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use paid_core::{ToolCall, Usage};
use serde_json::Value;

use crate::error::Error;
use crate::providers::ProviderKind;
use crate::server::RunningServer;

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Canned {
    /// The text.
    pub text: String,
    /// Tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// Usage, rendered in each provider's own fields.
    pub usage: Usage,
    /// Usage exactly as the provider would send it, overriding `usage`:
    /// Anthropic's `usage`, OpenAI's `usage`, Gemini's `usageMetadata`.
    pub raw_usage: Option<Value>,
    /// The model named in the answer; the requested one when `None`.
    pub model: Option<String>,
    /// How many pieces the text is streamed in.
    pub chunks: usize,
    /// Wait before the response head.
    pub head_delay: Duration,
    /// Wait between stream events.
    pub event_delay: Duration,
}

impl Canned {
    /// `text`, with a small usage, in 3 stream pieces, no delays.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            tool_calls: Vec::new(),
            usage: Usage { input: 12, cache_read: 0, cache_write: 0, output: 5, reasoning: 0 },
            raw_usage: None,
            model: None,
            chunks: 3,
            head_delay: Duration::ZERO,
            event_delay: Duration::ZERO,
        }
    }

    /// The same with `usage`.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// The same with usage sent verbatim.
    pub fn raw_usage(mut self, raw: Value) -> Self {
        self.raw_usage = Some(raw);
        self
    }

    /// The same with a tool call.
    pub fn tool_call(mut self, call: ToolCall) -> Self {
        self.tool_calls.push(call);
        self
    }

    /// The same naming `model`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The same streamed in `n` pieces.
    pub fn chunks(mut self, n: usize) -> Self {
        self.chunks = n.max(1);
        self
    }

    /// The same with a wait before the response head.
    pub fn head_delay(mut self, d: Duration) -> Self {
        self.head_delay = d;
        self
    }

    /// The same with a wait between stream events.
    pub fn event_delay(mut self, d: Duration) -> Self {
        self.event_delay = d;
        self
    }

    /// The text in `chunks` pieces (split on character boundaries).
    pub(crate) fn pieces(&self) -> Vec<String> {
        let chars: Vec<char> = self.text.chars().collect();
        let n = self.chunks.max(1);
        let per = chars.len().div_ceil(n).max(1);
        let mut out: Vec<String> = chars.chunks(per).map(|c| c.iter().collect()).collect();
        while out.len() < n {
            out.push(String::new());
        }
        out
    }
}

/// A provider error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeError {
    /// HTTP status (429, 500, 529, ...).
    pub status: u16,
    /// The message.
    pub message: String,
    /// `retry-after` seconds, if any.
    pub retry_after: Option<u64>,
    /// Wait before answering.
    pub head_delay: Duration,
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Success.
    Ok(Canned),
    /// Failure.
    Error(FakeError),
}

impl Reply {
    /// An error answer with `status`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Reply::Error(FakeError { status, message: message.into(), retry_after: None, head_delay: Duration::ZERO })
    }

    /// The same with `retry-after: secs` (errors only).
    pub fn retry_after(self, secs: u64) -> Self {
        match self {
            Reply::Error(e) => Reply::Error(FakeError { retry_after: Some(secs), ..e }),
            ok => ok,
        }
    }
}

/// A request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Which API it was for.
    pub kind: ProviderKind,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: Option<String>,
    /// Headers, lowercased names, in order.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` if it was not JSON).
    pub body: Value,
}

impl Received {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct FakeState {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Canned>,
    received: Mutex<Vec<Received>>,
    record: bool,
}

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeUpstream {
    server: RunningServer,
    state: Arc<FakeState>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeUpstream {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> Result<Self, Error> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), true).await
    }

    /// Starts on `addr`; with `record` false, requests are not kept (for
    /// benchmarks).
    pub async fn start_on(addr: SocketAddr, record: bool) -> Result<Self, Error> {
        let state = Arc::new(FakeState {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Canned::text("Hello from the fake upstream.")),
            received: Mutex::new(Vec::new()),
            record,
        });
        let router = Router::new().fallback(answer).with_state(state.clone());
        Ok(Self { server: RunningServer::bind(addr, router).await?, state })
    }

    /// `http://127.0.0.1:{port}`: the base URL for every provider kind.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Queues a reply.
    pub fn push(&self, reply: Reply) {
        lock(&self.state.script).push_back(reply);
    }

    /// Sets the answer given when the queue is empty.
    pub fn set_default(&self, canned: Canned) {
        *lock(&self.state.default) = canned;
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        self.server.shutdown().await
    }
}

fn kind_of(path: &str) -> Option<ProviderKind> {
    if path == "/v1/messages" {
        Some(ProviderKind::Anthropic)
    } else if path == "/v1/chat/completions" {
        Some(ProviderKind::OpenAi)
    } else if crate::providers::gemini::model_from_path(path).is_some() {
        Some(ProviderKind::Gemini)
    } else {
        None
    }
}

async fn answer(State(state): State<Arc<FakeState>>, req: http::Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let Some(kind) = kind_of(&path) else {
        return (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": {"message": "no such endpoint"}})))
            .into_response();
    };
    let bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if state.record {
        lock(&state.received).push(Received {
            kind,
            path: path.clone(),
            query: parts.uri.query().map(str::to_string),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: json.clone(),
        });
    }
    let reply = lock(&state.script).pop_front().unwrap_or_else(|| Reply::Ok(lock(&state.default).clone()));
    match reply {
        Reply::Error(e) => {
            // not an assertion: the fake upstream's scripted latency
            tokio::time::sleep(e.head_delay).await;
            error_response(kind, &e)
        }
        Reply::Ok(c) => {
            // not an assertion: the fake upstream's scripted latency
            tokio::time::sleep(c.head_delay).await;
            let requested = match kind {
                ProviderKind::Gemini => crate::providers::gemini::model_from_path(&path).unwrap_or("").to_string(),
                _ => json.get("model").and_then(Value::as_str).unwrap_or("").to_string(),
            };
            let model = c.model.clone().unwrap_or(requested);
            let stream = match kind {
                ProviderKind::Gemini => path.ends_with(":streamGenerateContent"),
                _ => json.get("stream").and_then(Value::as_bool).unwrap_or(false),
            };
            if !stream {
                let body = match kind {
                    ProviderKind::Anthropic => anthropic::message(&c, &model),
                    ProviderKind::Gemini => gemini::response(&c, &model),
                    _ => openai::completion(&c, &model),
                };
                return axum::Json(body).into_response();
            }
            let frames = match kind {
                ProviderKind::Anthropic => anthropic::events(&c, &model),
                ProviderKind::Gemini => gemini::events(&c, &model),
                _ => {
                    let include_usage =
                        json.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
                    openai::events(&c, &model, include_usage)
                }
            };
            sse_response(frames, c.event_delay)
        }
    }
}

fn error_response(kind: ProviderKind, e: &FakeError) -> Response {
    let body = match kind {
        ProviderKind::Anthropic => crate::providers::anthropic::error_body(e.status, &e.message),
        ProviderKind::Gemini => crate::providers::gemini::error_body(e.status, &e.message),
        _ => openai::error(e.status, &e.message),
    };
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Sends `frames` (whole SSE events, separators included), waiting `gap`
/// between them.
fn sse_response(frames: Vec<String>, gap: Duration) -> Response {
    let stream = futures::stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| async move {
        if i > 0 && !gap.is_zero() {
            // not an assertion: paces the fake stream's frames
            tokio::time::sleep(gap).await;
        }
        Ok::<_, Infallible>(Bytes::from(frame))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `event: {name}\ndata: {json}\n\n`.
pub(crate) fn named_event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// `data: {json}\n\n`.
pub(crate) fn data_event(data: &Value) -> String {
    format!("data: {data}\n\n")
}
