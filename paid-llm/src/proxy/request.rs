//! A request body as the proxy reads it: strictly parsed, the few fields it
//! needs (model, streaming, output cap), and the rewrite that makes an
//! OpenAI stream report its usage.

use std::collections::HashSet;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::providers::{ProviderKind, gemini};

/// The request as it will be forwarded.
pub(crate) struct Plan {
    kind: ProviderKind,
    /// The body to forward.
    pub(crate) body: Bytes,
    /// The model it names (in the body, or for Gemini in the path).
    pub(crate) model: Option<String>,
    /// Whether it asks for a stream.
    pub(crate) stream: bool,
    /// The output cap it sets (`max_tokens`, `max_completion_tokens`,
    /// `max_output_tokens`, or Gemini's `generationConfig.maxOutputTokens`).
    pub(crate) max_output: Option<u64>,
}

/// The few fields the proxy reads from a request body; serde skips the rest
/// (the prompt) without building it.
#[derive(serde::Deserialize)]
struct Peek {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default, rename = "generationConfig")]
    generation_config: Option<GenerationPeek>,
}

#[derive(serde::Deserialize)]
struct GenerationPeek {
    #[serde(default, rename = "maxOutputTokens")]
    max_output_tokens: Option<u64>,
}

impl Plan {
    /// Reads a request body. A body that is not one JSON object, or that
    /// holds a key twice anywhere (a proxy and a provider could read
    /// different values from it), is refused with the reason.
    pub(crate) fn read(kind: ProviderKind, path: &str, body: Bytes) -> Result<Self, String> {
        check_no_duplicate_keys(&body)?;
        let peek: Peek = serde_json::from_slice(&body).map_err(|e| format!("the request body is not valid: {e}"))?;
        let (model, stream) = match kind {
            ProviderKind::Gemini => {
                (gemini::model_from_path(path).map(str::to_string), path.ends_with(":streamGenerateContent"))
            }
            _ => (peek.model, peek.stream.unwrap_or(false)),
        };
        let max_output = peek
            .max_completion_tokens
            .or(peek.max_tokens)
            .or(peek.max_output_tokens)
            .or(peek.generation_config.and_then(|g| g.max_output_tokens));
        Ok(Self { kind, body, model, stream, max_output })
    }

    /// Caps the output at `tokens` when the request sets no cap of its own,
    /// so that what is reserved for it bounds what it can cost: in the
    /// field each dialect reads (`max_completion_tokens` for OpenAI,
    /// `max_tokens` for compatible servers, Gemini's
    /// `generationConfig.maxOutputTokens`; Anthropic requires `max_tokens`
    /// already).
    pub(crate) fn ensure_output_cap(&mut self, tokens: u64) -> Result<(), String> {
        if self.max_output.is_some() || self.kind == ProviderKind::Anthropic {
            return Ok(());
        }
        let mut obj = match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(obj)) => obj,
            _ => return Err("the request body is not a JSON object".into()),
        };
        match self.kind {
            ProviderKind::OpenAi => {
                obj.insert("max_completion_tokens".into(), tokens.into());
            }
            ProviderKind::Compatible => {
                obj.insert("max_tokens".into(), tokens.into());
            }
            ProviderKind::Gemini => {
                let config = obj.entry("generationConfig").or_insert(Value::Null);
                if !config.is_object() {
                    *config = Value::Object(Default::default());
                }
                if let Value::Object(config) = config {
                    config.insert("maxOutputTokens".into(), tokens.into());
                }
            }
            ProviderKind::Anthropic => {}
        }
        let body = serde_json::to_vec(&obj).map_err(|e| format!("cannot write the request body: {e}"))?;
        self.body = Bytes::from(body);
        self.max_output = Some(tokens);
        Ok(())
    }

    /// OpenAI-format streams report usage only when asked: ask, always,
    /// whatever the client sent (`stream_options` missing, `null`, not an
    /// object, or `include_usage: false`).
    pub(crate) fn ensure_stream_usage(&mut self) -> Result<(), String> {
        if !self.kind.is_openai_format() || !self.stream {
            return Ok(());
        }
        let mut obj = match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(obj)) => obj,
            _ => return Err("the request body is not a JSON object".into()),
        };
        let opts = obj.entry("stream_options").or_insert(Value::Null);
        if !opts.is_object() {
            *opts = Value::Object(Default::default());
        }
        if let Value::Object(opts) = opts {
            opts.insert("include_usage".into(), Value::Bool(true));
        }
        let body = serde_json::to_vec(&obj).map_err(|e| format!("cannot write the request body: {e}"))?;
        self.body = Bytes::from(body);
        Ok(())
    }
}

/// Fails on the first object, at any depth, that holds a key twice.
fn check_no_duplicate_keys(body: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    Unique.deserialize(&mut de).map_err(|e| format!("the request body is not valid: {e}"))?;
    de.end().map_err(|e| format!("the request body is not valid: {e}"))
}

/// A JSON value walked for duplicate keys, building nothing.
#[derive(Clone, Copy)]
struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value_seed(Unique)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read(kind: ProviderKind, body: &str) -> Result<Plan, String> {
        Plan::read(kind, "/v1/chat/completions", Bytes::from(body.to_string()))
    }

    #[test]
    fn duplicate_keys_anywhere_are_refused() {
        for body in [
            r#"{"model":"a","stream":false,"stream":true}"#,
            r#"{"model":"a","messages":[{"role":"user","role":"system"}]}"#,
            r#"{"model":"a","stream_options":{"include_usage":true,"include_usage":false}}"#,
        ] {
            let err = read(ProviderKind::OpenAi, body).err().unwrap();
            assert!(err.contains("duplicate key"), "{body}: {err}");
        }
        assert!(read(ProviderKind::OpenAi, r#"{"model":"a","messages":[{"role":"user"},{"role":"user"}]}"#).is_ok());
        assert!(read(ProviderKind::OpenAi, r#"{"model":"a"} trailing"#).is_err());
        assert!(read(ProviderKind::OpenAi, "[1]").is_err(), "not an object");
    }

    #[test]
    fn every_stream_is_made_to_report_usage() {
        for options in
            ["", r#","stream_options":null"#, r#","stream_options":{"include_usage":false}"#, r#","stream_options":7"#]
        {
            let body = format!(r#"{{"model":"a","stream":true{options}}}"#);
            let mut plan = read(ProviderKind::OpenAi, &body).unwrap();
            plan.ensure_stream_usage().unwrap();
            let sent: Value = serde_json::from_slice(&plan.body).unwrap();
            assert_eq!(sent["stream_options"]["include_usage"], true, "{body}");
        }
        let mut plain = read(ProviderKind::OpenAi, r#"{"model":"a"}"#).unwrap();
        plain.ensure_stream_usage().unwrap();
        assert_eq!(&plain.body[..], br#"{"model":"a"}"#, "a non-stream request is forwarded as sent");
    }

    #[test]
    fn a_request_without_an_output_cap_gets_one_in_its_own_dialect() {
        let capped = |kind, body: &str| {
            let mut plan = Plan::read(kind, "/x", Bytes::from(body.to_string())).unwrap();
            plan.ensure_output_cap(99).unwrap();
            (serde_json::from_slice::<Value>(&plan.body).unwrap(), plan.max_output)
        };
        let (body, cap) = capped(ProviderKind::OpenAi, r#"{"model":"a"}"#);
        assert_eq!((body["max_completion_tokens"].as_u64(), cap), (Some(99), Some(99)));
        let (body, _) = capped(ProviderKind::Compatible, r#"{"model":"a"}"#);
        assert_eq!(body["max_tokens"], 99);
        let (body, _) = capped(ProviderKind::Gemini, r#"{"contents":[],"generationConfig":{"temperature":0}}"#);
        assert_eq!(
            (body["generationConfig"]["maxOutputTokens"].as_u64(), body["generationConfig"]["temperature"].as_u64()),
            (Some(99), Some(0))
        );
        let (body, cap) = capped(ProviderKind::OpenAi, r#"{"model":"a","max_tokens":5}"#);
        assert_eq!((body.get("max_completion_tokens"), cap), (None, Some(5)), "a cap the client set is kept");
    }

    #[test]
    fn the_output_cap_is_read_from_each_dialect() {
        let cap = |kind, body: &str| Plan::read(kind, "/x", Bytes::from(body.to_string())).unwrap().max_output;
        assert_eq!(cap(ProviderKind::Anthropic, r#"{"max_tokens":5}"#), Some(5));
        assert_eq!(cap(ProviderKind::OpenAi, r#"{"max_completion_tokens":6,"max_tokens":5}"#), Some(6));
        assert_eq!(cap(ProviderKind::Gemini, r#"{"generationConfig":{"maxOutputTokens":7}}"#), Some(7));
        assert_eq!(cap(ProviderKind::OpenAi, r#"{"model":"a"}"#), None);
    }
}
