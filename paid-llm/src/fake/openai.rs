//! OpenAI Chat Completions responses, chunks and errors.

use serde_json::{Value, json};

use super::{Canned, data_event};

fn usage(c: &Canned) -> Value {
    c.raw_usage.clone().unwrap_or_else(|| {
        let u = c.usage;
        let prompt = u.input + u.cache_read + u.cache_write;
        let completion = u.output + u.reasoning;
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": u.cache_read, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        })
    })
}

fn finish_reason(c: &Canned) -> &'static str {
    if c.tool_calls.is_empty() { "stop" } else { "tool_calls" }
}

fn id() -> String {
    format!("chatcmpl-fake{:016x}", rand::random::<u64>())
}

fn created() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An error body as OpenAI sends it.
pub(super) fn error(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        429 => ("requests", "rate_limit_exceeded"),
        401 => ("invalid_request_error", "invalid_api_key"),
        500..=599 => ("server_error", "server_error"),
        _ => ("invalid_request_error", "invalid_request"),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// A whole `chat.completion`.
pub(super) fn completion(c: &Canned, model: &str) -> Value {
    let mut message = json!({"role": "assistant", "content": c.text, "refusal": null, "annotations": []});
    if !c.tool_calls.is_empty() {
        message["tool_calls"] = c
            .tool_calls
            .iter()
            .map(|t| json!({"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments.to_string()}}))
            .collect();
    }
    json!({
        "id": id(),
        "object": "chat.completion",
        "created": created(),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(c)}],
        "usage": usage(c),
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    })
}

/// The chunks of a streamed completion, `[DONE]` last; the usage chunk only
/// when the request asked for it.
pub(super) fn events(c: &Canned, model: &str, include_usage: bool) -> Vec<String> {
    let id = id();
    let created = created();
    let chunk = |choices: Value| {
        let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "service_tier": "default", "system_fingerprint": "fp_fake", "choices": choices});
        if include_usage {
            v["usage"] = Value::Null;
        }
        data_event(&v)
    };
    let mut out = vec![chunk(json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null},
                                      "logprobs": null, "finish_reason": null}]))];
    for piece in c.pieces() {
        out.push(chunk(json!([{"index": 0, "delta": {"content": piece}, "logprobs": null, "finish_reason": null}])));
    }
    for (i, t) in c.tool_calls.iter().enumerate() {
        out.push(chunk(json!([{"index": 0, "delta": {"tool_calls": [{"index": i, "id": t.id, "type": "function",
                    "function": {"name": t.name, "arguments": ""}}]}, "logprobs": null, "finish_reason": null}])));
        out.push(chunk(json!([{"index": 0, "delta": {"tool_calls": [{"index": i,
                    "function": {"arguments": t.arguments.to_string()}}]}, "logprobs": null, "finish_reason": null}])));
    }
    out.push(chunk(json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason(c)}])));
    if include_usage {
        out.push(data_event(&json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                                    "service_tier": "default", "system_fingerprint": "fp_fake",
                                    "choices": [], "usage": usage(c)})));
    }
    out.push("data: [DONE]\n\n".to_string());
    out
}
