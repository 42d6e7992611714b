//! The conversation as Anthropic `messages`, which must alternate between `user` and
//! `assistant`: entries that map to the same role in a row are merged into one message, so
//! consecutive tool results (and a user message or summary after them) form one user turn, with
//! the `tool_result` blocks first as the API requires.

use dari_protocol::tools::ContentBlock;
use serde_json::{Map, Value, json};

use crate::harness::pi::model::{AssistantBlock, AssistantTurn, Entry, ToolResultEntry};

pub(super) fn messages(entries: &[Entry]) -> Vec<Value> {
    let mut messages: Vec<Value> = Vec::new();
    for entry in entries {
        let (role, blocks) = match entry {
            Entry::User { content } => ("user", content.iter().filter_map(content_block).collect()),
            Entry::Assistant(turn) => ("assistant", assistant_blocks(turn)),
            Entry::ToolResult(result) => ("user", vec![tool_result(result)]),
            Entry::CompactionSummary { summary, .. } => ("user", vec![text_block(&Entry::summary_text(summary))]),
        };
        push_blocks(&mut messages, role, blocks);
    }
    messages
}

/// Adds `blocks` to the last message when it has the same role, else as a new message. A message
/// with no block is refused by the API, so none is made.
fn push_blocks(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    let last_content = messages
        .last_mut()
        .filter(|message| message["role"] == role)
        .and_then(|message| message["content"].as_array_mut());
    match last_content {
        Some(content) => {
            content.extend(blocks);
            // Stable: the results keep their order, and so does the rest.
            content.sort_by_key(|block| block["type"] != "tool_result");
        }
        None => messages.push(json!({ "role": role, "content": blocks })),
    }
}

/// Text (the API refuses empty text blocks) and thinking the API can verify: thinking without a
/// signature came from another provider and is left out. A tool call's `arguments` that are not
/// an object (the raw text of invalid JSON) are sent as `{}`, since `input` must be one.
fn assistant_blocks(turn: &AssistantTurn) -> Vec<Value> {
    turn.content
        .iter()
        .filter_map(|block| match block {
            AssistantBlock::Text { text } if !text.is_empty() => Some(text_block(text)),
            AssistantBlock::Text { .. } => None,
            AssistantBlock::Thinking { thinking, signature: Some(signature) } => {
                Some(json!({ "type": "thinking", "thinking": thinking, "signature": signature }))
            }
            AssistantBlock::Thinking { signature: None, .. } => None,
            AssistantBlock::ToolCall { id, name, arguments } => {
                let input = if arguments.is_object() { arguments.clone() } else { Value::Object(Map::new()) };
                Some(json!({ "type": "tool_use", "id": id, "name": name, "input": input }))
            }
        })
        .collect()
}

fn tool_result(result: &ToolResultEntry) -> Value {
    let mut block = json!({ "type": "tool_result", "tool_use_id": result.tool_call_id, "is_error": result.is_error });
    let content: Vec<Value> = result.content.iter().filter_map(content_block).collect();
    if !content.is_empty() {
        block["content"] = Value::Array(content);
    }
    block
}

/// A text or image block; `None` for empty text, which the API refuses.
fn content_block(block: &ContentBlock) -> Option<Value> {
    match block {
        ContentBlock::Text { text } if text.is_empty() => None,
        ContentBlock::Text { text } => Some(text_block(text)),
        ContentBlock::Image { data, mime_type } => Some(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": mime_type, "data": data },
        })),
    }
}

fn text_block(text: &str) -> Value {
    json!({ "type": "text", "text": text })
}
