//! Normalizing each provider's usage into Paid's disjoint buckets, and
//! metering responses as they pass through the proxy.
//!
//! [`Usage`] counts every token once: `input` (not cached), `cache_read`,
//! `cache_write`, `output` (excluding reasoning) and `reasoning`. Providers
//! overlap their counts differently:
//!
//! | provider | input | cache_read | cache_write | output | reasoning |
//! | --- | --- | --- | --- | --- | --- |
//! | Anthropic | `input_tokens` | `cache_read_input_tokens` | `cache_creation_input_tokens` | `output_tokens` | — (thinking is billed and counted as output) |
//! | OpenAI | `prompt_tokens − cached_tokens` | `cached_tokens` | — | `completion_tokens − reasoning_tokens` | `reasoning_tokens` |
//! | Gemini | `promptTokenCount − cachedContentTokenCount + toolUsePromptTokenCount` | `cachedContentTokenCount` | — | `candidatesTokenCount` | `thoughtsTokenCount` |

use paid_core::Usage;
use serde_json::Value;

use crate::providers::{ProviderKind, anthropic, gemini, openai};

/// Anthropic's usage in buckets.
pub fn from_anthropic(u: &anthropic::WireUsage) -> Usage {
    Usage {
        input: u.input_tokens.unwrap_or(0),
        cache_read: u.cache_read_input_tokens.unwrap_or(0),
        cache_write: u.cache_creation_input_tokens.unwrap_or(0),
        output: u.output_tokens.unwrap_or(0),
        reasoning: 0,
    }
}

/// OpenAI's usage in buckets.
pub fn from_openai(u: &openai::WireUsage) -> Usage {
    let cached = u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0);
    let reasoning = u.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0);
    Usage {
        input: u.prompt_tokens.saturating_sub(cached),
        cache_read: cached.min(u.prompt_tokens),
        cache_write: 0,
        output: u.completion_tokens.saturating_sub(reasoning),
        reasoning: reasoning.min(u.completion_tokens),
    }
}

/// Gemini's usage in buckets.
pub fn from_gemini(u: &gemini::WireUsage) -> Usage {
    let cached = u.cached_content_token_count.unwrap_or(0);
    Usage {
        input: u.prompt_token_count.saturating_sub(cached) + u.tool_use_prompt_token_count.unwrap_or(0),
        cache_read: cached.min(u.prompt_token_count),
        cache_write: 0,
        output: u.candidates_token_count,
        reasoning: u.thoughts_token_count.unwrap_or(0),
    }
}

/// Whether `json` has a key `key` (quoted) whose value is an object, as
/// opposed to `null`. A quoted key cannot occur inside a JSON string, where
/// quotes are escaped.
fn has_object(json: &str, key: &str) -> bool {
    json.match_indices(key).any(|(i, _)| {
        let rest = json[i + key.len()..].trim_start();
        rest.strip_prefix(':').is_some_and(|r| r.trim_start().starts_with('{'))
    })
}

/// What a metered response said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metered {
    /// The model that answered, if the response names it.
    pub model: Option<String>,
    /// Tokens, if the response reported them.
    pub usage: Option<Usage>,
}

/// Reads usage from a whole (non-streamed) JSON response body.
pub fn from_body(kind: ProviderKind, body: &[u8]) -> Metered {
    let mut meter = Meter::new(kind);
    meter.observe_json(body);
    meter.finish()
}

/// Extracts usage from a response, one JSON document or SSE event at a time.
///
/// The proxy feeds it a copy of each event as it passes; nothing is held
/// back from the client.
#[derive(Debug, Clone)]
pub struct Meter {
    kind: ProviderKind,
    model: Option<String>,
    anthropic: anthropic::WireUsage,
    seen: bool,
    openai: Option<openai::WireUsage>,
    gemini: Option<gemini::WireUsage>,
}

impl Meter {
    /// A meter for `kind`'s wire format.
    pub fn new(kind: ProviderKind) -> Self {
        Self { kind, model: None, anthropic: Default::default(), seen: false, openai: None, gemini: None }
    }

    /// Observes one SSE event's `data`.
    ///
    /// Events that cannot carry usage are skipped without parsing them: for
    /// Anthropic everything but `message_start` and `message_delta`; for
    /// OpenAI, chunks without a `"usage"` key once the model is known.
    pub fn observe_event(&mut self, data: &str) {
        let d = data.trim_start();
        if d.starts_with("[DONE]") {
            return;
        }
        let skip = match self.kind {
            ProviderKind::Anthropic => !(d.contains("\"message_start\"") || d.contains("\"message_delta\"")),
            ProviderKind::OpenAi | ProviderKind::Compatible => self.model.is_some() && !has_object(d, "\"usage\""),
            ProviderKind::Gemini => false,
        };
        if !skip {
            self.observe_json(d.as_bytes());
        }
    }

    /// Observes one JSON document: a whole response, or one stream event.
    pub fn observe_json(&mut self, json: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(json) else { return };
        match self.kind {
            ProviderKind::Anthropic => {
                let (usage, model) = match v.get("type").and_then(Value::as_str) {
                    Some("message_start") => (v.pointer("/message/usage"), v.pointer("/message/model")),
                    Some("message_delta") => (v.get("usage"), None),
                    Some("message") => (v.get("usage"), v.get("model")),
                    _ => (None, None),
                };
                self.take_model(model);
                if let Some(u) = usage.and_then(|u| serde_json::from_value::<anthropic::WireUsage>(u.clone()).ok()) {
                    self.anthropic.update(&u);
                    self.seen = true;
                }
            }
            ProviderKind::OpenAi | ProviderKind::Compatible => {
                self.take_model(v.get("model"));
                if let Some(u) = v.get("usage").filter(|u| !u.is_null())
                    && let Ok(u) = serde_json::from_value::<openai::WireUsage>(u.clone())
                {
                    self.openai = Some(u);
                }
            }
            ProviderKind::Gemini => {
                self.take_model(v.get("modelVersion"));
                if let Some(u) = v.get("usageMetadata")
                    && let Ok(u) = serde_json::from_value::<gemini::WireUsage>(u.clone())
                {
                    self.gemini = Some(u);
                }
            }
        }
    }

    fn take_model(&mut self, model: Option<&Value>) {
        if let Some(m) = model.and_then(Value::as_str).filter(|m| !m.is_empty()) {
            self.model = Some(m.to_string());
        }
    }

    /// What was seen.
    pub fn finish(&self) -> Metered {
        let usage = match self.kind {
            ProviderKind::Anthropic => self.seen.then(|| from_anthropic(&self.anthropic)),
            ProviderKind::OpenAi | ProviderKind::Compatible => self.openai.as_ref().map(from_openai),
            ProviderKind::Gemini => self.gemini.as_ref().map(from_gemini),
        };
        Metered { model: self.model.clone(), usage }
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn anthropic_stream_takes_input_from_start_and_output_from_delta() {
        let mut m = Meter::new(ProviderKind::Anthropic);
        m.observe_event(r#"{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":25,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":1}}}"#);
        m.observe_event(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#);
        m.observe_event(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#);
        assert_eq!(
            m.finish(),
            Metered {
                model: Some("claude-sonnet-4-5".into()),
                usage: Some(Usage { input: 25, cache_read: 2000, cache_write: 100, output: 15, reasoning: 0 })
            }
        );
    }

    #[test]
    fn openai_usage_subtracts_cached_and_reasoning() {
        let body = br#"{"id":"c","object":"chat.completion","model":"gpt-5-mini","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":300,"total_tokens":1300,"prompt_tokens_details":{"cached_tokens":800},"completion_tokens_details":{"reasoning_tokens":200}}}"#;
        assert_eq!(
            from_body(ProviderKind::OpenAi, body).usage,
            Some(Usage { input: 200, cache_read: 800, cache_write: 0, output: 100, reasoning: 200 })
        );
    }

    #[test]
    fn openai_stream_usage_comes_in_the_last_chunk() {
        let mut m = Meter::new(ProviderKind::OpenAi);
        m.observe_event(r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-5","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"usage":null}"#);
        assert_eq!(m.finish().usage, None);
        m.observe_event(r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-5","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#);
        m.observe_event("[DONE]");
        assert_eq!(m.finish().usage, Some(Usage { input: 9, output: 3, ..Usage::default() }));
    }

    #[test]
    fn usage_objects_are_told_from_nulls() {
        assert!(has_object(r#"{"usage": {"prompt_tokens":1}}"#, "\"usage\""));
        assert!(!has_object(r#"{"usage":null,"x":"\"usage\": {"}"#, "\"usage\""));
    }

    #[test]
    fn gemini_usage_takes_the_last_event() {
        let mut m = Meter::new(ProviderKind::Gemini);
        m.observe_event(r#"{"candidates":[],"usageMetadata":{"promptTokenCount":50,"candidatesTokenCount":1,"totalTokenCount":51},"modelVersion":"gemini-2.5-pro"}"#);
        m.observe_event(r#"{"candidates":[],"usageMetadata":{"promptTokenCount":50,"cachedContentTokenCount":20,"candidatesTokenCount":9,"thoughtsTokenCount":30,"totalTokenCount":89},"modelVersion":"gemini-2.5-pro"}"#);
        assert_eq!(
            m.finish(),
            Metered {
                model: Some("gemini-2.5-pro".into()),
                usage: Some(Usage { input: 30, cache_read: 20, cache_write: 0, output: 9, reasoning: 30 })
            }
        );
    }
}
