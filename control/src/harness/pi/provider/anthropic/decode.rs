//! The messages stream: `message_start`, then for each content block a `content_block_start`,
//! its deltas and a `content_block_stop`, then `message_delta` (the stop reason and the output
//! tokens) and `message_stop`. `ping` and event types this code does not know are skipped, as
//! Anthropic asks of clients; an `error` event ends the call.

use serde_json::Value;

use crate::harness::pi::model::{
    AssistantBlock, AssistantTurn, ModelError, ModelErrorKind, StopReason, StreamEvent, Usage,
};
use crate::harness::pi::provider::failure::{ended_early, parse_event, stream_error};
use crate::harness::pi::provider::sse::SseEvent;
use crate::harness::pi::provider::{self, parse_tool_arguments};

/// Builds the answer from the events as they arrive.
pub(crate) struct Decoder {
    label: &'static str,
    model: String,
    /// The content blocks by the stream's `index`, in the order they started.
    blocks: Vec<(u64, Block)>,
    usage: Usage,
    stop_reason: Option<String>,
    /// `message_stop` arrived.
    done: bool,
}

enum Block {
    Text(String),
    Thinking {
        thinking: String,
        signature: Option<String>,
    },
    ToolUse {
        id: String,
        name: String,
        partial_json: String,
    },
    /// A block the harness has no use for (`redacted_thinking`, server tools).
    Skipped,
}

impl Decoder {
    /// `request_model` names the answer until `message_start` names its model.
    pub(crate) fn new(label: &'static str, request_model: &str) -> Decoder {
        Decoder {
            label,
            model: request_model.to_owned(),
            blocks: Vec::new(),
            usage: Usage::default(),
            stop_reason: None,
            done: false,
        }
    }

    fn message_start(&mut self, message: &Value) {
        if let Some(model) = message["model"].as_str().filter(|model| !model.is_empty()) {
            model.clone_into(&mut self.model);
        }
        self.update_usage(&message["usage"]);
    }

    /// Counts in `usage` replace ours: `message_delta` repeats them, final.
    fn update_usage(&mut self, usage: &Value) {
        let fields = [
            (&mut self.usage.input_tokens, "input_tokens"),
            (&mut self.usage.output_tokens, "output_tokens"),
            (&mut self.usage.cache_read_tokens, "cache_read_input_tokens"),
            (&mut self.usage.cache_write_tokens, "cache_creation_input_tokens"),
        ];
        for (count, field) in fields {
            if let Some(value) = usage[field].as_u64() {
                *count = value;
            }
        }
    }

    fn block_start(&mut self, index: u64, block: &Value, on_event: &mut dyn FnMut(StreamEvent)) {
        let text_field = |field: &str| block[field].as_str().unwrap_or("").to_owned();
        let started = match block["type"].as_str() {
            Some("text") => {
                let text = text_field("text");
                if !text.is_empty() {
                    on_event(StreamEvent::TextDelta(text.clone()));
                }
                Block::Text(text)
            }
            Some("thinking") => {
                let signature = block["signature"].as_str().filter(|signature| !signature.is_empty());
                Block::Thinking { thinking: text_field("thinking"), signature: signature.map(str::to_owned) }
            }
            Some("tool_use") => {
                let (id, name) = (text_field("id"), text_field("name"));
                on_event(StreamEvent::ToolCallStarted { id: id.clone(), name: name.clone() });
                Block::ToolUse { id, name, partial_json: String::new() }
            }
            _ => Block::Skipped,
        };
        self.blocks.push((index, started));
    }

    fn block_delta(
        &mut self,
        index: u64,
        delta: &Value,
        on_event: &mut dyn FnMut(StreamEvent),
    ) -> Result<(), ModelError> {
        let label = self.label;
        let Some((_, block)) = self.blocks.iter_mut().rev().find(|(started, _)| *started == index) else {
            let message = format!("{label} sent a delta for content block {index}, which never started");
            return Err(ModelError::new(ModelErrorKind::BadResponse, message));
        };
        let piece = |field: &str| delta[field].as_str().unwrap_or("");
        match (delta["type"].as_str(), block) {
            (Some("text_delta"), Block::Text(text)) => {
                text.push_str(piece("text"));
                on_event(StreamEvent::TextDelta(piece("text").to_owned()));
            }
            (Some("thinking_delta"), Block::Thinking { thinking, .. }) => {
                thinking.push_str(piece("thinking"));
                on_event(StreamEvent::ThinkingDelta(piece("thinking").to_owned()));
            }
            (Some("signature_delta"), Block::Thinking { signature, .. }) => {
                signature.get_or_insert_default().push_str(piece("signature"));
            }
            (Some("input_json_delta"), Block::ToolUse { partial_json, .. }) => {
                partial_json.push_str(piece("partial_json"))
            }
            // Deltas of skipped blocks, and kinds of delta this code does not know.
            _ => {}
        }
        Ok(())
    }
}

impl provider::Decoder for Decoder {
    fn decode(&mut self, event: SseEvent, on_event: &mut dyn FnMut(StreamEvent)) -> Result<bool, ModelError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(false);
        }
        let value = parse_event(self.label, data)?;
        let index = value["index"].as_u64().unwrap_or(0);
        match value["type"].as_str().or(event.event.as_deref()).unwrap_or("") {
            "message_start" => self.message_start(&value["message"]),
            "content_block_start" => self.block_start(index, &value["content_block"], on_event),
            "content_block_delta" => self.block_delta(index, &value["delta"], on_event)?,
            "message_delta" => {
                if let Some(reason) = value["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_owned());
                }
                self.update_usage(&value["usage"]);
            }
            "message_stop" => {
                self.done = true;
                return Ok(true);
            }
            "error" => return Err(stream_error(self.label, &value["error"], data)),
            // `ping`, `content_block_stop`, and event types added after this code.
            _ => {}
        }
        Ok(false)
    }

    fn finish(self) -> Result<AssistantTurn, ModelError> {
        let label = self.label;
        if !self.done {
            return Err(ended_early(label));
        }
        let mut content = Vec::with_capacity(self.blocks.len());
        for (_, block) in self.blocks {
            match block {
                Block::Text(text) if text.is_empty() => {}
                Block::Text(text) => content.push(AssistantBlock::Text { text }),
                Block::Thinking { thinking, signature } if thinking.is_empty() && signature.is_none() => {}
                Block::Thinking { thinking, signature } => {
                    content.push(AssistantBlock::Thinking { thinking, signature })
                }
                Block::ToolUse { name, .. } if name.is_empty() => {
                    let message = format!("{label} sent a tool call with no name");
                    return Err(ModelError::new(ModelErrorKind::BadResponse, message));
                }
                Block::ToolUse { id, name, partial_json } => {
                    content.push(AssistantBlock::ToolCall { id, name, arguments: parse_tool_arguments(&partial_json) });
                }
                Block::Skipped => {}
            }
        }
        let has_tool_calls = content.iter().any(|block| matches!(block, AssistantBlock::ToolCall { .. }));
        let stop_reason = match self.stop_reason.as_deref() {
            Some("max_tokens" | "model_context_window_exceeded") => StopReason::Length,
            Some("tool_use") => StopReason::ToolUse,
            Some("refusal") => {
                let message = format!("{label} refused to go on with the answer (stop reason refusal)");
                return Err(ModelError::new(ModelErrorKind::Rejected, message));
            }
            // `end_turn`, `stop_sequence`, `pause_turn`, and reasons added after this code.
            _ if has_tool_calls => StopReason::ToolUse,
            _ => StopReason::Stop,
        };
        Ok(AssistantTurn { content, stop_reason, usage: self.usage, model: self.model })
    }
}
