//! OpenAI-compatible servers (Ollama, vLLM, OpenRouter, LiteLLM, ...).
//!
//! They speak the OpenAI Chat Completions format at
//! `{base_url}/v1/chat/completions`, so the client is
//! [`OpenAiProvider`] configured for them:
//! named after the server, sending `max_tokens` (which all of them accept),
//! and with an optional key.

use secrecy::SecretString;

use super::openai::OpenAiProvider;
use super::{ProviderConfig, ProviderKind};
use crate::error::Error;

/// Ollama on its default port.
pub const OLLAMA_BASE_URL: &str = "http://localhost:11434";
/// vLLM's OpenAI server on its default port.
pub const VLLM_BASE_URL: &str = "http://localhost:8000";
/// OpenRouter.
pub const OPENROUTER_BASE_URL: &str = "https://openrouter.ai/api";

/// A client for the compatible server `name` at `base_url` (what precedes
/// `/v1/chat/completions`).
///
/// ```
/// use paid_core::LlmProvider;
/// let ollama = paid_llm::providers::compatible::client("ollama", "http://localhost:11434", None).unwrap();
/// assert_eq!(ollama.name(), "ollama");
/// ```
pub fn client(name: &str, base_url: &str, api_key: Option<SecretString>) -> Result<OpenAiProvider, Error> {
    Ok(OpenAiProvider::new(ProviderConfig::new(ProviderKind::Compatible, base_url, api_key).named(name))?
        .legacy_max_tokens(true))
}
