//! OpenAI's chat completions wire format, spoken by OpenAI, OpenRouter and most compatible
//! servers: `POST {base_url}/chat/completions` with `stream: true`.
//!
//! Choices made for every such endpoint (pi detects many more per host; these are the ones that
//! work everywhere we go):
//!
//! - The answer's length is capped with `max_completion_tokens` when calling OpenAI itself (its
//!   reasoning models refuse `max_tokens`), and with `max_tokens` everywhere else: OpenRouter and
//!   compatible servers all take it, not all take the newer name.
//! - `tools` is left out when no tool is offered. When the history holds tool calls all the same,
//!   `tools: []` is sent (LiteLLM needs it, as pi found), except to OpenAI itself, which refuses
//!   an empty array.
//! - Thinking blocks are not sent back: chat completions has no field for them, and some hosts
//!   (DeepSeek) refuse a request that carries `reasoning_content`.
//! - The system prompt is a `system` message (no `developer` role: not every host knows it).

mod decode;
mod messages;

use serde_json::{Value, json};

pub(super) use self::decode::Decoder;
use super::{HttpCall, is_custom_base_url};
use crate::harness::pi::model::{Endpoint, Entry, ModelRequest, ToolSpec};
use dari_protocol::manifest::LlmProvider;

/// The request for one streamed answer.
pub(super) fn call(endpoint: &Endpoint, request: &ModelRequest<'_>) -> HttpCall {
    let is_openai_itself = endpoint.provider == LlmProvider::Openai && !is_custom_base_url(endpoint);
    HttpCall {
        url: format!("{}/chat/completions", endpoint.base_url.trim_end_matches('/')),
        headers: vec![("authorization", format!("Bearer {}", endpoint.api_key.expose()))],
        body: request_body(request, is_openai_itself),
    }
}

fn request_body(request: &ModelRequest<'_>, is_openai_itself: bool) -> Value {
    let mut body = json!({
        "model": request.model,
        "messages": messages::messages(request.system, request.entries),
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    let max_tokens_field = if is_openai_itself { "max_completion_tokens" } else { "max_tokens" };
    body[max_tokens_field] = json!(request.max_tokens);
    if !request.tools.is_empty() {
        body["tools"] = request.tools.iter().map(tool).collect();
    } else if !is_openai_itself && has_tool_calls(request.entries) {
        body["tools"] = json!([]);
    }
    body
}

fn tool(spec: &ToolSpec) -> Value {
    json!({
        "type": "function",
        "function": { "name": spec.name, "description": spec.description, "parameters": spec.parameters },
    })
}

fn has_tool_calls(entries: &[Entry]) -> bool {
    entries.iter().any(|entry| match entry {
        Entry::Assistant(turn) => turn.tool_calls().next().is_some(),
        Entry::ToolResult(_) => true,
        Entry::User { .. } | Entry::CompactionSummary { .. } => false,
    })
}

#[cfg(test)]
mod tests;
