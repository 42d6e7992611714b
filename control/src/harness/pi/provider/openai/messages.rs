//! The conversation as chat completions `messages`: the system prompt first, then one message per
//! entry, with a tool result's images re-sent in a user message after the run of tool results
//! they came in (a `tool` message carries text only; pi does the same).

use dari_protocol::tools::ContentBlock;
use serde_json::{Value, json};

use crate::harness::pi::model::{AssistantTurn, Entry, ToolResultEntry};

/// The text that introduces the images of tool results, as pi words it.
pub(super) const TOOL_IMAGES_INTRO: &str = "Attached image(s) from tool result:";

/// What a tool message says when its result holds images only.
const IMAGES_ONLY_TEXT: &str = "(see attached image)";

pub(super) fn messages(system: &str, entries: &[Entry]) -> Vec<Value> {
    let mut messages = Vec::new();
    if !system.is_empty() {
        messages.push(json!({ "role": "system", "content": system }));
    }
    // The images of the current run of tool results: they may follow only its last result.
    let mut tool_images: Vec<Value> = Vec::new();
    for entry in entries {
        if !matches!(entry, Entry::ToolResult(_)) {
            push_tool_images(&mut messages, &mut tool_images);
        }
        match entry {
            Entry::User { content } => messages.push(json!({ "role": "user", "content": user_content(content) })),
            Entry::Assistant(turn) => messages.extend(assistant_message(turn)),
            Entry::ToolResult(result) => {
                messages.push(tool_message(result));
                tool_images.extend(result.content.iter().filter_map(image_part));
            }
            Entry::CompactionSummary { summary, .. } => {
                messages.push(json!({ "role": "user", "content": Entry::summary_text(summary) }));
            }
        }
    }
    push_tool_images(&mut messages, &mut tool_images);
    messages
}

/// Text only becomes a plain string (which every compatible server takes), text with images a
/// list of parts.
fn user_content(content: &[ContentBlock]) -> Value {
    if content.iter().all(|block| matches!(block, ContentBlock::Text { .. })) {
        return Value::String(texts(content).join("\n"));
    }
    content
        .iter()
        .map(|block| match block {
            ContentBlock::Text { text } => json!({ "type": "text", "text": text }),
            ContentBlock::Image { data, mime_type } => image_url(mime_type, data),
        })
        .collect()
}

/// The turn's text and tool calls; `None` for a turn with neither (thinking only), which the
/// API would refuse.
fn assistant_message(turn: &AssistantTurn) -> Option<Value> {
    let tool_calls: Vec<Value> = turn
        .tool_calls()
        .map(|call| {
            // Arguments that were not valid JSON are kept as their raw text, and sent back so.
            let arguments = match call.arguments {
                Value::String(raw) => raw.clone(),
                arguments => arguments.to_string(),
            };
            json!({ "id": call.id, "type": "function", "function": { "name": call.name, "arguments": arguments } })
        })
        .collect();
    let text = turn.text();
    if text.is_empty() && tool_calls.is_empty() {
        return None;
    }
    let mut message =
        json!({ "role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) } });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    Some(message)
}

fn tool_message(result: &ToolResultEntry) -> Value {
    let texts = texts(&result.content);
    let has_images = result.content.iter().any(|block| matches!(block, ContentBlock::Image { .. }));
    let content = if texts.is_empty() && has_images { IMAGES_ONLY_TEXT.to_owned() } else { texts.join("\n") };
    json!({ "role": "tool", "tool_call_id": result.tool_call_id, "content": content })
}

fn push_tool_images(messages: &mut Vec<Value>, tool_images: &mut Vec<Value>) {
    if tool_images.is_empty() {
        return;
    }
    let mut content = vec![json!({ "type": "text", "text": TOOL_IMAGES_INTRO })];
    content.append(tool_images);
    messages.push(json!({ "role": "user", "content": content }));
}

fn texts(content: &[ContentBlock]) -> Vec<&str> {
    content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text { text } => Some(text.as_str()),
            ContentBlock::Image { .. } => None,
        })
        .collect()
}

fn image_part(block: &ContentBlock) -> Option<Value> {
    match block {
        ContentBlock::Image { data, mime_type } => Some(image_url(mime_type, data)),
        ContentBlock::Text { .. } => None,
    }
}

fn image_url(mime_type: &str, data: &str) -> Value {
    json!({ "type": "image_url", "image_url": { "url": format!("data:{mime_type};base64,{data}") } })
}
