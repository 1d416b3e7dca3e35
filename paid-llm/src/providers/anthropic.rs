//! Anthropic Messages: `POST /v1/messages`, key in `x-api-key`.
//!
//! A stream is a sequence of SSE events named after their `type`:
//! `message_start` (carries the input usage), `content_block_start`,
//! `content_block_delta` (`text_delta`, `input_json_delta`, ...),
//! `content_block_stop`, `message_delta` (stop reason and cumulative output
//! usage), `message_stop`, and `ping` at any time; `error` on failure.

use std::collections::BTreeMap;

use async_trait::async_trait;
use eventsource_stream::Event;
use futures::stream::BoxStream;
use paid_core::{ChatEvent, ChatRequest, ChatResponse, LlmProvider, Role, ToolCall};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ProviderConfig, StreamDecoder, decode_stream, json_body, normalize_stop_reason, push_merged, send};
use crate::error::Error;

/// The path of the Messages API.
pub const MESSAGES_PATH: &str = "/v1/messages";
/// The API version header value sent with every request.
pub const API_VERSION: &str = "2023-06-01";
/// The header carrying the key.
pub const KEY_HEADER: &str = "x-api-key";

/// A Messages request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// Model name.
    pub model: String,
    /// Output cap.
    pub max_tokens: u32,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The conversation, alternating `user` and `assistant`.
    pub messages: Vec<InputMessage>,
    /// Tools offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// Whether to stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// Its blocks.
    pub content: Vec<ContentBlock>,
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// JSON schema of the input.
    pub input_schema: Value,
}

/// A content block, in requests and responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool call by the model.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments.
        input: Value,
    },
    /// A tool's answer, sent by the user side.
    ToolResult {
        /// The call answered.
        tool_use_id: String,
        /// The answer.
        content: String,
    },
    /// Extended thinking.
    Thinking {
        /// The thought.
        thinking: String,
        /// Its signature.
        #[serde(default)]
        signature: String,
    },
    /// Any block this client does not model.
    #[serde(other)]
    Other,
}

/// A Messages response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    /// Message id.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Always `assistant`.
    #[serde(default)]
    pub role: String,
    /// The model that answered.
    pub model: String,
    /// The blocks.
    pub content: Vec<ContentBlock>,
    /// `end_turn`, `tool_use`, `max_tokens`, `stop_sequence`, ...
    pub stop_reason: Option<String>,
    /// The stop sequence hit, if any.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Tokens.
    pub usage: WireUsage,
}

/// Anthropic's usage block. Every field is optional because `message_delta`
/// events carry only some of them; see [`crate::usage::from_anthropic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireUsage {
    /// Input tokens not read from nor written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Input tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    /// Output tokens, thinking included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
}

impl WireUsage {
    /// Takes every field `later` reports (stream usage is cumulative).
    pub fn update(&mut self, later: &WireUsage) {
        let take = |mine: &mut Option<u64>, theirs: Option<u64>| {
            if theirs.is_some() {
                *mine = theirs;
            }
        };
        take(&mut self.input_tokens, later.input_tokens);
        take(&mut self.cache_creation_input_tokens, later.cache_creation_input_tokens);
        take(&mut self.cache_read_input_tokens, later.cache_read_input_tokens);
        take(&mut self.output_tokens, later.output_tokens);
    }
}

/// One streamed event (the `data` of an SSE event, tagged by `type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The message begins; carries input usage.
    MessageStart {
        /// The message so far (empty content).
        message: MessageStart,
    },
    /// A content block begins.
    ContentBlockStart {
        /// Block index.
        index: usize,
        /// The block, empty.
        content_block: ContentBlock,
    },
    /// More of a block.
    ContentBlockDelta {
        /// Block index.
        index: usize,
        /// The increment.
        delta: Delta,
    },
    /// A block ends.
    ContentBlockStop {
        /// Block index.
        index: usize,
    },
    /// Top-level changes: stop reason, cumulative usage.
    MessageDelta {
        /// The changes.
        delta: MessageDeltaBody,
        /// Cumulative usage.
        #[serde(default)]
        usage: WireUsage,
    },
    /// The message ends.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// A failure mid-stream.
    Error {
        /// What failed.
        error: ErrorBody,
    },
    /// An event this client does not model.
    #[serde(other)]
    Unknown,
}

/// The `message` of `message_start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageStart {
    /// Message id.
    pub id: String,
    /// Model.
    pub model: String,
    /// Usage so far.
    #[serde(default)]
    pub usage: WireUsage,
}

/// The increment of `content_block_delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Delta {
    /// More text.
    TextDelta {
        /// The text.
        text: String,
    },
    /// More of a tool call's JSON input.
    InputJsonDelta {
        /// A fragment of JSON.
        partial_json: String,
    },
    /// More thinking.
    ThinkingDelta {
        /// The thought.
        thinking: String,
    },
    /// A thinking block's signature.
    SignatureDelta {
        /// Signature.
        signature: String,
    },
    /// Anything else.
    #[serde(other)]
    Other,
}

/// The `delta` of `message_delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDeltaBody {
    /// Why it stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The stop sequence hit.
    #[serde(default)]
    pub stop_sequence: Option<String>,
}

/// The inner object of an error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `rate_limit_error`, `overloaded_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Message.
    pub message: String,
}

/// An error body, `{"type":"error","error":{"type":...,"message":...}}`,
/// with the error type Anthropic uses for `status`.
pub fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

/// Builds the wire request for `req`.
pub fn to_wire(req: &paid_core::ChatRequest, stream: bool) -> MessagesRequest {
    let mut messages: Vec<InputMessage> = Vec::new();
    for m in &req.messages {
        let (role, content) = match m.role {
            Role::User => ("user", vec![ContentBlock::Text { text: m.content.clone() }]),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(ContentBlock::Text { text: m.content.clone() });
                }
                blocks.extend(m.tool_calls.iter().map(|c| ContentBlock::ToolUse {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    input: c.arguments.clone(),
                }));
                ("assistant", blocks)
            }
            Role::Tool => (
                "user",
                vec![ContentBlock::ToolResult {
                    tool_use_id: m.tool_call_id.clone().unwrap_or_default(),
                    content: m.content.clone(),
                }],
            ),
        };
        push_merged(
            &mut messages,
            InputMessage { role: role.into(), content },
            |a, b| a.role == b.role,
            |a, b| a.content.extend(b.content),
        );
    }
    MessagesRequest {
        model: req.model.clone(),
        max_tokens: req.max_tokens,
        system: req.system.clone(),
        messages,
        tools: req
            .tools
            .iter()
            .map(|t| Tool {
                name: t.name.clone(),
                description: t.description.clone(),
                input_schema: t.parameters.clone(),
            })
            .collect(),
        stream: stream.then_some(true),
    }
}

/// Reads a wire response into the normalized form.
pub fn from_wire(resp: MessagesResponse) -> ChatResponse {
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for block in resp.content {
        match block {
            ContentBlock::Text { text } => content.push_str(&text),
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall { id, name, arguments: input }),
            _ => {}
        }
    }
    ChatResponse {
        content,
        tool_calls,
        stop_reason: normalize_stop_reason(resp.stop_reason.as_deref().unwrap_or("end_turn")),
        usage: crate::usage::from_anthropic(&resp.usage),
    }
}

/// The Anthropic Messages client.
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    config: ProviderConfig,
    http: reqwest::Client,
}

impl AnthropicProvider {
    /// A client for `config`, with its own connection pool.
    pub fn new(config: ProviderConfig) -> Result<Self, Error> {
        Ok(Self::with_client(config, super::http_client()?))
    }

    /// A client for `config` sharing `http`'s connection pool.
    pub fn with_client(config: ProviderConfig, http: reqwest::Client) -> Self {
        Self { config, http }
    }

    fn request(&self, body: &MessagesRequest) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .post(format!("{}{MESSAGES_PATH}", self.config.base_url))
            .header("anthropic-version", API_VERSION)
            .json(body);
        if let Some(key) = &self.config.api_key {
            rb = rb.header(KEY_HEADER, key.expose_secret());
        }
        rb
    }
}

#[async_trait]
impl LlmProvider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn complete(&self, req: &ChatRequest) -> paid_core::Result<ChatResponse> {
        let name = &self.config.name;
        let resp = send(name, self.request(&to_wire(req, false)).timeout(self.config.timeout)).await?;
        Ok(from_wire(json_body(name, resp).await?))
    }

    async fn stream(&self, req: &ChatRequest) -> paid_core::Result<BoxStream<'static, paid_core::Result<ChatEvent>>> {
        let name = &self.config.name;
        let resp = tokio::time::timeout(self.config.timeout, send(name, self.request(&to_wire(req, true))))
            .await
            .map_err(|_| Error::Timeout { what: format!("{name} response head"), after: self.config.timeout })??;
        Ok(decode_stream(name, resp, Decoder { provider: name.clone(), ..Decoder::default() }))
    }
}

/// Decodes Anthropic stream events into [`ChatEvent`]s.
#[derive(Debug, Default)]
struct Decoder {
    provider: String,
    usage: WireUsage,
    stop_reason: Option<String>,
    /// Tool calls being assembled, by block index: id, name, JSON so far.
    tools: BTreeMap<usize, (String, String, String)>,
    done: bool,
}

impl StreamDecoder for Decoder {
    fn on_event(&mut self, event: &Event, out: &mut Vec<ChatEvent>) -> Result<(), Error> {
        let parsed: StreamEvent = serde_json::from_str(&event.data).map_err(|e| Error::Decode {
            provider: self.provider.clone(),
            message: format!("bad {} event: {e}", event.event),
        })?;
        match parsed {
            StreamEvent::MessageStart { message } => self.usage.update(&message.usage),
            StreamEvent::ContentBlockStart { index, content_block: ContentBlock::ToolUse { id, name, .. } } => {
                self.tools.insert(index, (id, name, String::new()));
            }
            StreamEvent::ContentBlockDelta { delta: Delta::TextDelta { text }, .. } => {
                out.push(ChatEvent::TextDelta(text))
            }
            StreamEvent::ContentBlockDelta { index, delta: Delta::InputJsonDelta { partial_json } } => {
                if let Some(t) = self.tools.get_mut(&index) {
                    t.2.push_str(&partial_json);
                }
            }
            StreamEvent::ContentBlockStop { index } => {
                if let Some((id, name, json)) = self.tools.remove(&index) {
                    let arguments = if json.trim().is_empty() {
                        Value::Object(Default::default())
                    } else {
                        serde_json::from_str(&json).map_err(|e| Error::Decode {
                            provider: self.provider.clone(),
                            message: format!("tool call {name} has invalid JSON input: {e}"),
                        })?
                    };
                    out.push(ChatEvent::ToolCall(ToolCall { id, name, arguments }));
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                self.usage.update(&usage);
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
            }
            StreamEvent::MessageStop => {
                self.done = true;
                out.push(ChatEvent::Done {
                    stop_reason: normalize_stop_reason(self.stop_reason.as_deref().unwrap_or("end_turn")),
                    usage: crate::usage::from_anthropic(&self.usage),
                });
            }
            StreamEvent::Error { error } => {
                let status = match error.kind.as_str() {
                    "overloaded_error" => 529,
                    "rate_limit_error" => 429,
                    "api_error" => 500,
                    _ => 400,
                };
                return Err(Error::Api {
                    provider: self.provider.clone(),
                    status,
                    class: crate::error::ErrorClass::from_http(status, &error.kind),
                    message: error.message,
                    retry_after: None,
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn on_end(&mut self, _out: &mut Vec<ChatEvent>) -> Result<(), Error> {
        if self.done {
            Ok(())
        } else {
            Err(Error::Decode { provider: self.provider.clone(), message: "stream ended before message_stop".into() })
        }
    }
}

#[cfg(test)]
mod tests {
    use paid_core::{Message, ToolSpec};
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn request_wire_format() {
        let req = ChatRequest {
            model: "claude-sonnet-4-5".into(),
            system: Some("be brief".into()),
            messages: vec![
                Message::user("list files"),
                Message {
                    role: Role::Assistant,
                    content: String::new(),
                    tool_calls: vec![ToolCall { id: "t1".into(), name: "ls".into(), arguments: json!({"dir": "."}) }],
                    tool_call_id: None,
                },
                Message {
                    role: Role::Tool,
                    content: "a.rs".into(),
                    tool_calls: vec![],
                    tool_call_id: Some("t1".into()),
                },
            ],
            tools: vec![ToolSpec {
                name: "ls".into(),
                description: "list".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 100,
        };
        assert_eq!(
            serde_json::to_value(to_wire(&req, true)).unwrap(),
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 100,
                "system": "be brief",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "list files"}]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ls", "input": {"dir": "."}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a.rs"}]}
                ],
                "tools": [{"name": "ls", "description": "list", "input_schema": {"type": "object"}}],
                "stream": true
            })
        );
    }

    #[test]
    fn response_wire_format() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "id": "t", "name": "ls", "input": {}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 30, "output_tokens": 5}
        });
        let resp = from_wire(serde_json::from_value(body).unwrap());
        assert_eq!(resp.content, "hi");
        assert_eq!(resp.stop_reason, "tool_use");
        assert_eq!(
            resp.usage,
            paid_core::Usage { input: 10, cache_read: 30, cache_write: 20, output: 5, reasoning: 0 }
        );
    }
}
