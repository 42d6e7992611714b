//! OpenAI's chat completions wire format (also OpenRouter's and every compatible endpoint's):
//! `chat.completion.chunk` frames, a usage chunk and `[DONE]`; or one `chat.completion`.

use serde_json::{Value, json};

use super::script::ScriptedUsage;
use super::wire::{Answer, Frame, fragments};

/// The `created` timestamp of every answer; clients do not read it.
const CREATED: u64 = 1_700_000_000;

/// A role chunk, the text in fragments, each tool call (its name, then its arguments in
/// fragments), a chunk with the finish reason, one with `choices: []` and the usage, `[DONE]`.
pub(super) fn stream_frames(answer: &Answer<'_>) -> Vec<Frame> {
    let chunk = |choices: Value| {
        json!({
            "id": id(answer), "object": "chat.completion.chunk", "created": CREATED, "model": answer.model,
            "system_fingerprint": null, "choices": choices,
        })
    };
    let delta = |delta: Value| {
        Frame::data(chunk(json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}])))
    };
    let opening_content = if answer.text.is_some() { json!("") } else { Value::Null };
    let mut frames = vec![delta(json!({"role": "assistant", "content": opening_content, "refusal": null}))];
    for fragment in fragments(answer.text.unwrap_or_default()) {
        frames.push(delta(json!({"content": fragment})));
    }
    for (index, call) in answer.tool_calls.iter().enumerate() {
        frames.push(delta(json!({"tool_calls": [{
            "index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""},
        }]})));
        for fragment in fragments(&call.arguments) {
            frames.push(delta(json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})));
        }
    }
    let finish = json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason(answer)}]);
    frames.push(Frame::data(chunk(finish)));
    let mut usage_chunk = chunk(json!([]));
    usage_chunk["usage"] = usage(answer.usage);
    frames.push(Frame::data(usage_chunk));
    frames.push(Frame::data("[DONE]"));
    frames
}

pub(super) fn whole_answer(answer: &Answer<'_>) -> Value {
    let mut message = json!({"role": "assistant", "content": answer.text, "refusal": null});
    if answer.calls_tools() {
        let calls: Vec<Value> = answer
            .tool_calls
            .iter()
            .map(|call| json!({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}))
            .collect();
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": id(answer), "object": "chat.completion", "created": CREATED, "model": answer.model,
        "system_fingerprint": null,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(answer)}],
        "usage": usage(answer.usage),
    })
}

/// `{"error": {"message", "type", "param", "code"}}`, typed after the status as OpenAI does.
pub(super) fn error_body(status: u16, message: &str) -> Value {
    let (error_type, code) = match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        500.. => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    json!({"error": {"message": message, "type": error_type, "param": null, "code": code}})
}

fn id(answer: &Answer<'_>) -> String {
    format!("chatcmpl-fake-{}", answer.number)
}

fn finish_reason(answer: &Answer<'_>) -> &'static str {
    if answer.calls_tools() { "tool_calls" } else { "stop" }
}

/// Prompt tokens count the cached ones too; `cost` only where the script sets one (OpenRouter).
fn usage(usage: &ScriptedUsage) -> Value {
    let prompt_tokens = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens;
    let mut body = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    });
    if let Some(cost) = usage.cost_usd {
        body["cost"] = json!(cost);
    }
    body
}
