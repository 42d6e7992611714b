//! Anthropic's Messages wire format: the named event sequence of a streamed message, or one
//! `message` object.

use serde_json::{Value, json};

use super::script::ScriptedUsage;
use super::wire::{Answer, Frame, fragments};

/// `message_start`, `ping`, each content block (`content_block_start`, its deltas,
/// `content_block_stop`), `message_delta` with the stop reason and output tokens, `message_stop`.
pub(super) fn stream_frames(answer: &Answer<'_>) -> Vec<Frame> {
    let mut opening_usage = usage(answer.usage);
    opening_usage["output_tokens"] = json!(1);
    let mut frames = vec![
        Frame::event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id(answer), "type": "message", "role": "assistant", "model": answer.model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": opening_usage,
            }}),
        ),
        Frame::event("ping", &json!({"type": "ping"})),
    ];
    let mut block = |index: usize, content_block: Value, deltas: Vec<Value>| {
        frames.push(Frame::event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": content_block}),
        ));
        for delta in deltas {
            frames.push(Frame::event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        frames.push(Frame::event("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
    };
    let text_blocks = usize::from(answer.text.is_some());
    if let Some(text) = answer.text {
        let deltas = fragments(text).into_iter().map(|fragment| json!({"type": "text_delta", "text": fragment}));
        block(0, json!({"type": "text", "text": ""}), deltas.collect());
    }
    for (call_idx, call) in answer.tool_calls.iter().enumerate() {
        // The API opens every tool call's input with an empty fragment.
        let deltas = std::iter::once("")
            .chain(fragments(&call.arguments))
            .map(|fragment| json!({"type": "input_json_delta", "partial_json": fragment}));
        let content_block = json!({"type": "tool_use", "id": call.id, "name": call.name, "input": {}});
        block(text_blocks + call_idx, content_block, deltas.collect());
    }
    frames.push(Frame::event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(answer), "stop_sequence": null},
                "usage": {"output_tokens": answer.usage.output_tokens}}),
    ));
    frames.push(Frame::event("message_stop", &json!({"type": "message_stop"})));
    frames
}

pub(super) fn whole_answer(answer: &Answer<'_>) -> Value {
    let text_block = answer.text.map(|text| json!({"type": "text", "text": text}));
    let tool_blocks = answer.tool_calls.iter().map(|call| {
        // Arguments scripted as invalid JSON have no object to stand for them: they stay text.
        let input = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!(call.arguments));
        json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input})
    });
    let content: Vec<Value> = text_block.into_iter().chain(tool_blocks).collect();
    json!({
        "id": id(answer), "type": "message", "role": "assistant", "model": answer.model, "content": content,
        "stop_reason": stop_reason(answer), "stop_sequence": null, "usage": usage(answer.usage),
    })
}

/// `{"type": "error", "error": {"type", "message"}}`, typed after the status as Anthropic does.
pub(super) fn error_body(status: u16, message: &str) -> Value {
    let error_type = match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    };
    json!({"type": "error", "error": {"type": error_type, "message": message}})
}

fn id(answer: &Answer<'_>) -> String {
    format!("msg_fake_{}", answer.number)
}

fn stop_reason(answer: &Answer<'_>) -> &'static str {
    if answer.calls_tools() { "tool_use" } else { "end_turn" }
}

fn usage(usage: &ScriptedUsage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    })
}
