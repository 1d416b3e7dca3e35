//! Gemini `generateContent` responses and stream events.

use serde_json::{Value, json};

use super::Canned;

fn usage(c: &Canned, full: bool) -> Value {
    if let Some(raw) = &c.raw_usage {
        return raw.clone();
    }
    let u = c.usage;
    let prompt = u.input + u.cache_read;
    let mut v = json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": if full { u.output } else { 1 },
        "totalTokenCount": prompt + if full { u.output + u.reasoning } else { 1 },
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    });
    if u.cache_read > 0 {
        v["cachedContentTokenCount"] = json!(u.cache_read);
    }
    if u.reasoning > 0 && full {
        v["thoughtsTokenCount"] = json!(u.reasoning);
    }
    v
}

fn parts(c: &Canned, text: &str, with_calls: bool) -> Vec<Value> {
    let mut parts = vec![json!({"text": text})];
    if with_calls {
        parts.extend(c.tool_calls.iter().map(|t| json!({"functionCall": {"name": t.name, "args": t.arguments}})));
    }
    parts
}

fn id() -> String {
    format!("fake{:016x}", rand::random::<u64>())
}

/// A whole `GenerateContentResponse`.
pub(super) fn response(c: &Canned, model: &str) -> Value {
    json!({
        "candidates": [{"content": {"parts": parts(c, &c.text, true), "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage(c, true),
        "modelVersion": model,
        "responseId": id(),
    })
}

/// The events of `streamGenerateContent?alt=sse`: one response per piece,
/// the last with the finish reason and full usage.
pub(super) fn events(c: &Canned, model: &str) -> Vec<String> {
    let id = id();
    let pieces = c.pieces();
    let n = pieces.len();
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let last = i + 1 == n;
            let mut candidate = json!({"content": {"parts": parts(c, piece, last), "role": "model"}, "index": 0});
            if last {
                candidate["finishReason"] = json!("STOP");
            }
            let body = json!({
                "candidates": [candidate],
                "usageMetadata": usage(c, last),
                "modelVersion": model,
                "responseId": id,
            });
            format!("data: {body}\r\n\r\n")
        })
        .collect()
}
