//! Language models: the [`LlmProvider`] port.

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::{Result, Usage};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The user (or the engine on its behalf).
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON schema of its arguments.
    pub parameters: serde_json::Value,
}

/// A call the model made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Provider-assigned id.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments.
    pub arguments: serde_json::Value,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who.
    pub role: Role,
    /// Text.
    pub content: String,
    /// Tool calls (assistant messages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call answered (tool messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: Role::User, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }
}

/// A completion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name.
    pub model: String,
    /// System prompt.
    pub system: Option<String>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools offered.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Output cap.
    pub max_tokens: u32,
}

/// A completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Text.
    pub content: String,
    /// Tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped (`end_turn`, `tool_use`, `max_tokens`, ...).
    pub stop_reason: String,
    /// Tokens.
    pub usage: Usage,
}

/// One event of a streamed completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChatEvent {
    /// More text.
    TextDelta(String),
    /// A complete tool call.
    ToolCall(ToolCall),
    /// The stream ended, with usage.
    Done {
        /// Why it stopped.
        stop_reason: String,
        /// Tokens.
        usage: Usage,
    },
}

/// A language model provider.
#[async_trait]
pub trait LlmProvider: Send + Sync + 'static {
    /// Provider name (`anthropic`, `openai`, ...).
    fn name(&self) -> &str;
    /// A complete response.
    async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse>;
    /// A streamed response.
    async fn stream(&self, req: &ChatRequest) -> Result<BoxStream<'static, Result<ChatEvent>>>;
}
