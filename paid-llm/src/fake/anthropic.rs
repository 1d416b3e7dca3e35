//! Anthropic Messages responses and stream events.

use serde_json::{Value, json};

use super::{Canned, named_event};

fn usage(c: &Canned) -> Value {
    c.raw_usage.clone().unwrap_or_else(|| {
        json!({
            "input_tokens": c.usage.input,
            "cache_creation_input_tokens": c.usage.cache_write,
            "cache_read_input_tokens": c.usage.cache_read,
            // Anthropic counts thinking as output.
            "output_tokens": c.usage.output + c.usage.reasoning,
        })
    })
}

fn stop_reason(c: &Canned) -> &'static str {
    if c.tool_calls.is_empty() { "end_turn" } else { "tool_use" }
}

fn id() -> String {
    format!("msg_fake{:016x}", rand::random::<u64>())
}

/// A whole `message`.
pub(super) fn message(c: &Canned, model: &str) -> Value {
    let mut content = vec![json!({"type": "text", "text": c.text})];
    content.extend(
        c.tool_calls.iter().map(|t| json!({"type": "tool_use", "id": t.id, "name": t.name, "input": t.arguments})),
    );
    json!({
        "id": id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(c),
        "stop_sequence": null,
        "usage": usage(c),
    })
}

/// The event sequence of a streamed message.
pub(super) fn events(c: &Canned, model: &str) -> Vec<String> {
    let full = usage(c);
    let mut start_usage = full.clone();
    if let Some(obj) = start_usage.as_object_mut() {
        obj.insert("output_tokens".into(), json!(1));
    }
    let output = full.get("output_tokens").cloned().unwrap_or(json!(0));
    let mut out = vec![named_event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id(), "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start_usage,
        }}),
    )];
    out.push(named_event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    out.push(named_event("ping", &json!({"type": "ping"})));
    for piece in c.pieces() {
        out.push(named_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    out.push(named_event("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
    for (i, t) in c.tool_calls.iter().enumerate() {
        let index = i + 1;
        out.push(named_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": t.id, "name": t.name, "input": {}}}),
        ));
        let args = t.arguments.to_string();
        let mid = args.char_indices().nth(args.chars().count() / 2).map(|(i, _)| i).unwrap_or(0);
        for part in [&args[..mid], &args[mid..]] {
            out.push(named_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": part}}),
            ));
        }
        out.push(named_event("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
    }
    out.push(named_event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(c), "stop_sequence": null},
                "usage": {"output_tokens": output}}),
    ));
    out.push(named_event("message_stop", &json!({"type": "message_stop"})));
    out
}
