//! Google Gemini: `POST /v1beta/models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` for streams; key in `x-goog-api-key`.
//!
//! A stream is a sequence of `data:` events, each a whole
//! `GenerateContentResponse` carrying the next parts and the usage so far
//! (`usageMetadata`); there is no end marker.

use async_trait::async_trait;
use eventsource_stream::Event;
use futures::stream::BoxStream;
use paid_core::{ChatEvent, ChatRequest, ChatResponse, LlmProvider, Role, ToolCall};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ProviderConfig, StreamDecoder, decode_stream, json_body, normalize_stop_reason, push_merged, send};
use crate::error::Error;

/// The header carrying the key.
pub const KEY_HEADER: &str = "x-goog-api-key";

/// The path of a model's `generateContent` (or, with `stream`,
/// `streamGenerateContent?alt=sse`).
pub fn path(model: &str, stream: bool) -> String {
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

/// The model named in a `generateContent` path, e.g.
/// `/v1beta/models/gemini-2.5-pro:generateContent` → `gemini-2.5-pro`.
pub fn model_from_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1beta/models/").or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, _action) = rest.split_once(':')?;
    (!model.is_empty() && !model.contains('/')).then_some(model)
}

/// A `generateContent` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    /// The conversation.
    pub contents: Vec<Content>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    /// Tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<WireTools>,
    /// Generation settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<GenerationConfig>,
}

/// A turn: role and parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Content {
    /// `user` or `model` (absent in `systemInstruction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Its parts.
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// A part of a turn; exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Whether the text is a thought summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    /// A call by the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    /// A tool's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse>,
}

/// `functionCall`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Call id (newer models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Tool name.
    pub name: String,
    /// Arguments.
    #[serde(default)]
    pub args: Value,
}

/// `functionResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionResponse {
    /// Call id, when the call had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Tool name.
    pub name: String,
    /// The answer (an object).
    pub response: Value,
}

/// `tools[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireTools {
    /// The functions.
    pub function_declarations: Vec<FunctionDeclaration>,
}

/// A function declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDeclaration {
    /// Name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Schema of the arguments.
    pub parameters: Value,
}

/// `generationConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    /// Output cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
}

/// A `GenerateContentResponse` (also each streamed event).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    /// Candidates (one unless more were asked for).
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// Usage so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<WireUsage>,
    /// The model version that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Response id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
}

/// One candidate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// Its content.
    #[serde(default)]
    pub content: Option<Content>,
    /// `STOP`, `MAX_TOKENS`, `SAFETY`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Index.
    #[serde(default)]
    pub index: u32,
}

/// Gemini's `usageMetadata`. `promptTokenCount` includes
/// `cachedContentTokenCount`; `candidatesTokenCount` excludes
/// `thoughtsTokenCount`; see [`crate::usage::from_gemini`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireUsage {
    /// All input tokens.
    #[serde(default)]
    pub prompt_token_count: u64,
    /// Input tokens served from the context cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_content_token_count: Option<u64>,
    /// Output tokens, thoughts excluded.
    #[serde(default)]
    pub candidates_token_count: u64,
    /// Thinking tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thoughts_token_count: Option<u64>,
    /// Input tokens of tool-use prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_prompt_token_count: Option<u64>,
    /// Everything.
    #[serde(default)]
    pub total_token_count: u64,
}

/// An error body, `{"error":{"code","message","status"}}`, with the status
/// name Google uses for `status`.
pub fn error_body(status: u16, message: &str) -> Value {
    let name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        413 => "INVALID_ARGUMENT",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    };
    json!({ "error": { "code": status, "message": message, "status": name } })
}

/// Builds the wire request for `req`.
pub fn to_wire(req: &ChatRequest) -> GenerateContentRequest {
    let mut contents: Vec<Content> = Vec::new();
    let tool_name = |id: &str| {
        req.messages
            .iter()
            .flat_map(|m| m.tool_calls.iter())
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    for m in &req.messages {
        let (role, parts) = match m.role {
            Role::User => ("user", vec![Part { text: Some(m.content.clone()), ..Part::default() }]),
            Role::Assistant => {
                let mut parts = Vec::new();
                if !m.content.is_empty() {
                    parts.push(Part { text: Some(m.content.clone()), ..Part::default() });
                }
                parts.extend(m.tool_calls.iter().map(|c| Part {
                    function_call: Some(FunctionCall { id: None, name: c.name.clone(), args: c.arguments.clone() }),
                    ..Part::default()
                }));
                ("model", parts)
            }
            Role::Tool => {
                let id = m.tool_call_id.clone().unwrap_or_default();
                let response = match serde_json::from_str::<Value>(&m.content) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({ "content": m.content }),
                };
                let part = Part {
                    function_response: Some(FunctionResponse { id: None, name: tool_name(&id), response }),
                    ..Part::default()
                };
                ("user", vec![part])
            }
        };
        push_merged(
            &mut contents,
            Content { role: Some(role.into()), parts },
            |a, b| a.role == b.role,
            |a, b| a.parts.extend(b.parts),
        );
    }
    GenerateContentRequest {
        contents,
        system_instruction: req
            .system
            .as_ref()
            .map(|s| Content { role: None, parts: vec![Part { text: Some(s.clone()), ..Part::default() }] }),
        tools: if req.tools.is_empty() {
            vec![]
        } else {
            vec![WireTools {
                function_declarations: req
                    .tools
                    .iter()
                    .map(|t| FunctionDeclaration {
                        name: t.name.clone(),
                        description: t.description.clone(),
                        parameters: t.parameters.clone(),
                    })
                    .collect(),
            }]
        },
        generation_config: Some(GenerationConfig { max_output_tokens: Some(req.max_tokens) }),
    }
}

fn collect_parts(parts: Vec<Part>, text: &mut String, calls: &mut Vec<ToolCall>, next_id: &mut usize) {
    for p in parts {
        if let Some(fc) = p.function_call {
            let id = fc.id.unwrap_or_else(|| format!("{}-{}", fc.name, *next_id));
            *next_id += 1;
            calls.push(ToolCall { id, name: fc.name, arguments: fc.args });
        } else if let Some(t) = p.text
            && p.thought != Some(true)
        {
            text.push_str(&t);
        }
    }
}

fn stop_reason(raw: Option<&str>, has_calls: bool) -> String {
    if has_calls {
        return "tool_use".into();
    }
    normalize_stop_reason(raw.unwrap_or("STOP"))
}

/// Reads a wire response into the normalized form.
pub fn from_wire(resp: GenerateContentResponse) -> ChatResponse {
    let usage = resp.usage_metadata.as_ref().map(crate::usage::from_gemini).unwrap_or_default();
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    let mut finish = None;
    if let Some(c) = resp.candidates.into_iter().next() {
        finish = c.finish_reason;
        collect_parts(c.content.map(|c| c.parts).unwrap_or_default(), &mut content, &mut tool_calls, &mut 0);
    }
    let stop_reason = stop_reason(finish.as_deref(), !tool_calls.is_empty());
    ChatResponse { content, tool_calls, stop_reason, usage }
}

/// The Gemini client.
#[derive(Debug, Clone)]
pub struct GeminiProvider {
    config: ProviderConfig,
    http: reqwest::Client,
}

impl GeminiProvider {
    /// A client for `config`, with its own connection pool.
    pub fn new(config: ProviderConfig) -> Result<Self, Error> {
        Ok(Self::with_client(config, super::http_client()?))
    }

    /// A client for `config` sharing `http`'s connection pool.
    pub fn with_client(config: ProviderConfig, http: reqwest::Client) -> Self {
        Self { config, http }
    }

    fn request(&self, model: &str, stream: bool, body: &GenerateContentRequest) -> reqwest::RequestBuilder {
        let mut rb = self.http.post(format!("{}{}", self.config.base_url, path(model, stream))).json(body);
        if let Some(key) = &self.config.api_key {
            rb = rb.header(KEY_HEADER, key.expose_secret());
        }
        rb
    }
}

#[async_trait]
impl LlmProvider for GeminiProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn complete(&self, req: &ChatRequest) -> paid_core::Result<ChatResponse> {
        let name = &self.config.name;
        let resp = send(name, self.request(&req.model, false, &to_wire(req)).timeout(self.config.timeout)).await?;
        Ok(from_wire(json_body(name, resp).await?))
    }

    async fn stream(&self, req: &ChatRequest) -> paid_core::Result<BoxStream<'static, paid_core::Result<ChatEvent>>> {
        let name = &self.config.name;
        let resp = tokio::time::timeout(self.config.timeout, send(name, self.request(&req.model, true, &to_wire(req))))
            .await
            .map_err(|_| Error::Timeout { what: format!("{name} response head"), after: self.config.timeout })??;
        Ok(decode_stream(name, resp, Decoder { provider: name.clone(), ..Decoder::default() }))
    }
}

#[derive(Debug, Default)]
struct Decoder {
    provider: String,
    usage: Option<WireUsage>,
    finish: Option<String>,
    calls: usize,
    any_call: bool,
}

impl StreamDecoder for Decoder {
    fn on_event(&mut self, event: &Event, out: &mut Vec<ChatEvent>) -> Result<(), Error> {
        let value: Value = serde_json::from_str(&event.data)
            .map_err(|e| Error::Decode { provider: self.provider.clone(), message: format!("bad event: {e}") })?;
        if let Some(err) = value.get("error") {
            let status = err.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
            return Err(Error::Api {
                provider: self.provider.clone(),
                status,
                class: crate::error::ErrorClass::from_http(status, &err.to_string()),
                message: err.get("message").and_then(Value::as_str).unwrap_or("stream failed").to_string(),
                retry_after: None,
            });
        }
        let chunk: GenerateContentResponse = serde_json::from_value(value)
            .map_err(|e| Error::Decode { provider: self.provider.clone(), message: format!("bad event: {e}") })?;
        if chunk.usage_metadata.is_some() {
            self.usage = chunk.usage_metadata;
        }
        if let Some(c) = chunk.candidates.into_iter().next() {
            if c.finish_reason.is_some() {
                self.finish = c.finish_reason;
            }
            let mut text = String::new();
            let mut calls = Vec::new();
            collect_parts(c.content.map(|c| c.parts).unwrap_or_default(), &mut text, &mut calls, &mut self.calls);
            if !text.is_empty() {
                out.push(ChatEvent::TextDelta(text));
            }
            self.any_call |= !calls.is_empty();
            out.extend(calls.into_iter().map(ChatEvent::ToolCall));
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Vec<ChatEvent>) -> Result<(), Error> {
        out.push(ChatEvent::Done {
            stop_reason: stop_reason(self.finish.as_deref(), self.any_call),
            usage: self.usage.as_ref().map(crate::usage::from_gemini).unwrap_or_default(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use paid_core::Message;
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn paths() {
        assert_eq!(path("gemini-2.5-pro", true), "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse");
        assert_eq!(model_from_path("/v1beta/models/gemini-2.5-pro:generateContent"), Some("gemini-2.5-pro"));
        assert_eq!(model_from_path("/v1beta/models/a/b:generateContent"), None);
    }

    #[test]
    fn request_wire_format() {
        let req = ChatRequest {
            model: "gemini-2.5-flash".into(),
            system: Some("be brief".into()),
            messages: vec![Message::user("hi")],
            tools: vec![],
            max_tokens: 64,
        };
        assert_eq!(
            serde_json::to_value(to_wire(&req)).unwrap(),
            json!({
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "systemInstruction": {"parts": [{"text": "be brief"}]},
                "generationConfig": {"maxOutputTokens": 64}
            })
        );
    }

    #[test]
    fn response_wire_format() {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "thinking…", "thought": true}, {"text": "hello"}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 40, "candidatesTokenCount": 7,
                              "thoughtsTokenCount": 12, "totalTokenCount": 119},
            "modelVersion": "gemini-2.5-flash"
        });
        let resp = from_wire(serde_json::from_value(body).unwrap());
        assert_eq!(resp.content, "hello");
        assert_eq!(resp.stop_reason, "end_turn");
        assert_eq!(
            resp.usage,
            paid_core::Usage { input: 60, cache_read: 40, cache_write: 0, output: 7, reasoning: 12 }
        );
    }
}
