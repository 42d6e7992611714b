//! Anthropic's messages wire format: `POST {base_url}/v1/messages` with `stream: true`.
//!
//! As pi does, the request marks two prompt-cache breakpoints (`cache_control: ephemeral`): the
//! system prompt, and the last block of the last user message. An agent resends its whole
//! history at every step, so each step reads the previous one's prefix from the cache.

mod decode;
mod messages;

use serde_json::{Value, json};

pub(super) use self::decode::Decoder;
use super::HttpCall;
use crate::harness::pi::model::{Endpoint, ModelRequest, ToolSpec};

/// The API version every request names.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The request for one streamed answer.
pub(super) fn call(endpoint: &Endpoint, request: &ModelRequest<'_>) -> HttpCall {
    HttpCall {
        url: format!("{}/v1/messages", endpoint.base_url.trim_end_matches('/')),
        headers: vec![
            ("x-api-key", endpoint.api_key.expose().to_owned()),
            ("anthropic-version", ANTHROPIC_VERSION.to_owned()),
        ],
        body: request_body(request),
    }
}

fn request_body(request: &ModelRequest<'_>) -> Value {
    let mut messages = messages::messages(request.entries);
    mark_cache_breakpoint(&mut messages);
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "stream": true,
    });
    if !request.system.is_empty() {
        body["system"] = json!([{ "type": "text", "text": request.system, "cache_control": ephemeral() }]);
    }
    if !request.tools.is_empty() {
        body["tools"] = request.tools.iter().map(tool).collect();
    }
    body
}

fn tool(spec: &ToolSpec) -> Value {
    json!({ "name": spec.name, "description": spec.description, "input_schema": spec.parameters })
}

/// Marks the last block of the last user message as the end of the cached prefix.
fn mark_cache_breakpoint(messages: &mut [Value]) {
    let last_user = messages.iter_mut().rev().find(|message| message["role"] == "user");
    let last_block =
        last_user.and_then(|message| message["content"].as_array_mut()).and_then(|blocks| blocks.last_mut());
    if let Some(block) = last_block {
        block["cache_control"] = ephemeral();
    }
}

fn ephemeral() -> Value {
    json!({ "type": "ephemeral" })
}

#[cfg(test)]
mod tests;
