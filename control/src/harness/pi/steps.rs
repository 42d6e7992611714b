//! The steps of a pi turn as the database records them: the conversation entries, the ledger
//! events (their `data` payloads are documented in docs/pi-harness.md) and the message's output
//! parts that each step adds.

use serde_json::{Value, json};

use super::model::{AssistantBlock, AssistantTurn, Entry, ToolCall, ToolResultEntry, Usage};
use crate::persistence::{Step, StepEvent, event_type};

/// How a tool call is run, as events name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// Read, bash, edit, write, grep, find, ls: run by sandboxd.
    BuiltIn,
    /// A custom tool of `kind: main`: run by sandboxd from the bundle.
    Main,
    /// A custom tool of `kind: external`: run by the client, which submits the result.
    External,
    /// A name the agent does not offer: answered with an error at once.
    Unknown,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::BuiltIn => "built_in",
            CallKind::Main => "main",
            CallKind::External => "external",
            CallKind::Unknown => "unknown",
        }
    }
}

pub fn entry_json(entry: &Entry) -> Value {
    serde_json::to_value(entry).unwrap_or(Value::Null)
}

pub fn usage_json(usage: &Usage) -> Value {
    let mut value = json!({
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "total_tokens": usage.total_tokens(),
    });
    if let Some(cost) = usage.cost_usd {
        value["cost_usd"] = json!(cost);
    }
    value
}

/// The user's message entering the conversation.
pub fn user_step(entry: &Entry) -> Step {
    Step { entries: vec![entry_json(entry)], ..Step::default() }
}

/// A model answer: `assistant.step_completed`, then per tool call `tool.call_requested`
/// (external: the client's turn) or `tool.call_started` (the sandbox's).
pub fn answer_step(
    message_id: &str,
    number: u32,
    answer: &AssistantTurn,
    message_usage: &Usage,
    kind_of: impl Fn(&str) -> CallKind,
    expires_at: impl Fn(&str) -> Option<i64>,
) -> Step {
    let parts: Vec<Value> = answer
        .content
        .iter()
        .filter_map(|block| match block {
            AssistantBlock::Text { text } if !text.is_empty() => Some(json!({"type": "text", "text": text})),
            AssistantBlock::ToolCall { id, name, arguments } => {
                Some(json!({"type": "tool_call", "id": id, "name": name, "arguments": arguments}))
            }
            _ => None,
        })
        .collect();
    let mut events = vec![StepEvent {
        event_type: event_type::ASSISTANT_STEP_COMPLETED,
        data: json!({
            "message_id": message_id,
            "step": number,
            "content": parts,
            "stop_reason": answer.stop_reason,
            "model": answer.model,
            "usage": usage_json(&answer.usage),
        }),
        tool_call_id: None,
    }];
    for call in answer.tool_calls() {
        let kind = kind_of(call.name);
        let mut data = json!({
            "message_id": message_id,
            "tool_call_id": call.id,
            "tool_name": call.name,
            "arguments": call.arguments,
            "kind": kind.as_str(),
        });
        let event_type = if kind == CallKind::External {
            if let Some(expires_at) = expires_at(call.name) {
                data["expires_at"] = json!(crate::api::timestamp(expires_at));
            }
            event_type::TOOL_CALL_REQUESTED
        } else {
            event_type::TOOL_CALL_STARTED
        };
        events.push(StepEvent { event_type, data, tool_call_id: Some(call.id.to_owned()) });
    }
    Step {
        entries: vec![entry_json(&Entry::Assistant(answer.clone()))],
        events,
        parts,
        usage: Some(usage_json(message_usage)),
        ..Step::default()
    }
}

/// A tool call's result, with `tool.call_completed` or `tool.call_failed` unless the ledger has
/// the result already (a client's `tool.result_submitted`).
pub fn result_step(
    message_id: &str,
    call: ToolCall<'_>,
    result: &ToolResultEntry,
    raw: Option<&Value>,
    details: &Value,
    record_event: bool,
) -> Step {
    let content = serde_json::to_value(&result.content).unwrap_or(Value::Null);
    let part = json!({
        "type": "tool_result",
        "tool_call_id": result.tool_call_id,
        "tool_name": result.tool_name,
        "content": content,
        "is_error": result.is_error,
    });
    let mut events = Vec::new();
    if record_event {
        let mut data = json!({
            "message_id": message_id,
            "tool_call_id": call.id,
            "tool_name": call.name,
            "result": raw.cloned().unwrap_or_else(|| content.clone()),
            "is_error": result.is_error,
            "details": details,
        });
        if result.is_error {
            data["error"] = json!(text_of(&result.content));
        }
        let event_type = if result.is_error { event_type::TOOL_CALL_FAILED } else { event_type::TOOL_CALL_COMPLETED };
        events.push(StepEvent { event_type, data, tool_call_id: Some(call.id.to_owned()) });
    }
    Step { entries: vec![entry_json(&Entry::ToolResult(result.clone()))], events, parts: vec![part], ..Step::default() }
}

/// A model call failed and will be tried again.
pub fn retry_step(message_id: &str, attempt: i64, max_attempts: u32, delay_ms: u64, error: &Value) -> Step {
    Step {
        events: vec![StepEvent {
            event_type: event_type::ASSISTANT_RETRY_SCHEDULED,
            data: json!({
                "message_id": message_id,
                "attempt": attempt,
                "max_attempts": max_attempts,
                "delay_ms": delay_ms,
                "error": error,
            }),
            tool_call_id: None,
        }],
        attempt: Some(attempt),
        ..Step::default()
    }
}

/// The start of the conversation, summarised.
pub fn compaction_step(message_id: &str, summary: &Entry, through: i64, tokens_before: u64, entries: usize) -> Step {
    Step {
        entries: vec![entry_json(summary)],
        events: vec![StepEvent {
            event_type: event_type::SESSION_COMPACTED,
            data: json!({
                "message_id": message_id,
                "tokens_before": tokens_before,
                "entries_summarized": entries,
            }),
            tool_call_id: None,
        }],
        compact_through: Some(through),
        ..Step::default()
    }
}

/// The text blocks of a tool result, joined.
pub fn text_of(content: &[dari_protocol::tools::ContentBlock]) -> String {
    content
        .iter()
        .filter_map(|block| match block {
            dari_protocol::tools::ContentBlock::Text { text } => Some(text.as_str()),
            dari_protocol::tools::ContentBlock::Image { .. } => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}
