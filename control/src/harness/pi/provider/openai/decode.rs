//! The chat completions stream: `data:` chunks of JSON whose `choices[0].delta` carries text,
//! reasoning and tool-call fragments, a chunk with `usage` near the end, then `data: [DONE]`.
//!
//! Fields are read leniently (a missing or `null` field is no news), since compatible servers
//! differ in what they leave out; only data that is not JSON at all fails the call.

use serde_json::Value;

use crate::harness::pi::model::{
    AssistantBlock, AssistantTurn, ModelError, ModelErrorKind, StopReason, StreamEvent, Usage,
};
use crate::harness::pi::provider::failure::{ended_early, parse_event, stream_error};
use crate::harness::pi::provider::sse::SseEvent;
use crate::harness::pi::provider::{self, parse_tool_arguments};

/// The fields hosts stream reasoning in, in the order pi reads them.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "reasoning", "reasoning_text"];

/// Builds the answer from the chunks as they arrive.
pub(crate) struct Decoder {
    label: &'static str,
    model: String,
    blocks: Vec<Block>,
    calls: Vec<PendingCall>,
    finish_reason: Option<String>,
    usage: Usage,
    /// `[DONE]` arrived.
    done: bool,
}

enum Block {
    Text(String),
    Thinking(String),
    /// The position of the call in `Decoder::calls`.
    ToolCall(usize),
}

/// A tool call whose fragments are still arriving.
struct PendingCall {
    /// The `index` the stream gives the call's fragments.
    index: u64,
    id: String,
    name: String,
    arguments: String,
    /// `StreamEvent::ToolCallStarted` was sent.
    announced: bool,
}

impl Decoder {
    /// `request_model` names the answer until the stream names its model.
    pub(crate) fn new(label: &'static str, request_model: &str) -> Decoder {
        Decoder {
            label,
            model: request_model.to_owned(),
            blocks: Vec::new(),
            calls: Vec::new(),
            finish_reason: None,
            usage: Usage::default(),
            done: false,
        }
    }

    fn chunk(&mut self, chunk: &Value, on_event: &mut dyn FnMut(StreamEvent)) {
        if let Some(model) = chunk["model"].as_str().filter(|model| !model.is_empty()) {
            model.clone_into(&mut self.model);
        }
        if chunk["usage"].is_object() {
            self.usage = usage(&chunk["usage"]);
        }
        let choice = &chunk["choices"][0];
        let delta = &choice["delta"];
        let reasoning = REASONING_FIELDS.iter().find_map(|field| delta[field].as_str().filter(|text| !text.is_empty()));
        if let Some(reasoning) = reasoning {
            self.push_thinking(reasoning);
            on_event(StreamEvent::ThinkingDelta(reasoning.to_owned()));
        }
        if let Some(text) = delta["content"].as_str().filter(|text| !text.is_empty()) {
            self.push_text(text);
            on_event(StreamEvent::TextDelta(text.to_owned()));
        }
        for fragment in delta["tool_calls"].as_array().into_iter().flatten() {
            self.tool_call_fragment(fragment, on_event);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_owned());
        }
    }

    fn push_text(&mut self, text: &str) {
        match self.blocks.last_mut() {
            Some(Block::Text(block)) => block.push_str(text),
            _ => self.blocks.push(Block::Text(text.to_owned())),
        }
    }

    fn push_thinking(&mut self, thinking: &str) {
        match self.blocks.last_mut() {
            Some(Block::Thinking(block)) => block.push_str(thinking),
            _ => self.blocks.push(Block::Thinking(thinking.to_owned())),
        }
    }

    /// One fragment of a tool call: its `id` and `function.name` come first, then pieces of
    /// `function.arguments`; fragments of parallel calls are told apart by `index`.
    fn tool_call_fragment(&mut self, fragment: &Value, on_event: &mut dyn FnMut(StreamEvent)) {
        let id = fragment["id"].as_str().filter(|id| !id.is_empty());
        let index = fragment["index"].as_u64().unwrap_or_else(|| self.index_without_index(id));
        let position = match self.calls.iter().position(|call| call.index == index) {
            Some(position) => position,
            None => {
                let call = PendingCall {
                    index,
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                    announced: false,
                };
                self.calls.push(call);
                self.blocks.push(Block::ToolCall(self.calls.len() - 1));
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[position];
        if let Some(id) = id
            && call.id.is_empty()
        {
            id.clone_into(&mut call.id);
        }
        let function = &fragment["function"];
        if let Some(name) = function["name"].as_str().filter(|name| !name.is_empty())
            && call.name.is_empty()
        {
            name.clone_into(&mut call.name);
        }
        match &function["arguments"] {
            Value::String(piece) => call.arguments.push_str(piece),
            Value::Null => {}
            // Some servers send the arguments whole, as an object.
            arguments => call.arguments = arguments.to_string(),
        }
        if !call.announced && !call.id.is_empty() && !call.name.is_empty() {
            call.announced = true;
            on_event(StreamEvent::ToolCallStarted { id: call.id.clone(), name: call.name.clone() });
        }
    }

    /// The call a fragment without `index` belongs to (some servers leave it out): a new call
    /// when it brings a new id, else the last call.
    fn index_without_index(&self, id: Option<&str>) -> u64 {
        let next_index = self.calls.iter().map(|call| call.index + 1).max().unwrap_or(0);
        match (id, self.calls.last()) {
            (Some(id), _) => self.calls.iter().find(|call| call.id == id).map_or(next_index, |call| call.index),
            (None, Some(last)) => last.index,
            (None, None) => 0,
        }
    }
}

impl provider::Decoder for Decoder {
    fn decode(&mut self, event: SseEvent, on_event: &mut dyn FnMut(StreamEvent)) -> Result<bool, ModelError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let chunk = parse_event(self.label, data)?;
        if let Some(error) = chunk.get("error").filter(|error| !error.is_null()) {
            return Err(stream_error(self.label, error, data));
        }
        self.chunk(&chunk, on_event);
        Ok(false)
    }

    fn finish(self) -> Result<AssistantTurn, ModelError> {
        let label = self.label;
        let reason = self.finish_reason.as_deref();
        if !self.done && reason.is_none() {
            return Err(ended_early(label));
        }
        match reason {
            Some("content_filter") => {
                let message = format!("{label} stopped the answer with its content filter");
                return Err(ModelError::new(ModelErrorKind::Rejected, message));
            }
            Some("error") => {
                let message = format!("{label} ended the answer with an error");
                return Err(ModelError::new(ModelErrorKind::ServerError, message));
            }
            _ => {}
        }
        let has_tool_calls = !self.calls.is_empty();
        let mut content = Vec::with_capacity(self.blocks.len());
        for block in self.blocks {
            content.push(match block {
                Block::Text(text) => AssistantBlock::Text { text },
                Block::Thinking(thinking) => AssistantBlock::Thinking { thinking, signature: None },
                Block::ToolCall(position) => {
                    let call = &self.calls[position];
                    if call.name.is_empty() {
                        let message = format!("{label} sent a tool call with no name (index {})", call.index);
                        return Err(ModelError::new(ModelErrorKind::BadResponse, message));
                    }
                    // A server that leaves the id out still needs one to pair the result with.
                    let id = if call.id.is_empty() { format!("call_{}", call.index) } else { call.id.clone() };
                    AssistantBlock::ToolCall {
                        id,
                        name: call.name.clone(),
                        arguments: parse_tool_arguments(&call.arguments),
                    }
                }
            });
        }
        let stop_reason = match reason {
            _ if has_tool_calls => StopReason::ToolUse,
            Some("length") => StopReason::Length,
            _ => StopReason::Stop,
        };
        Ok(AssistantTurn { content, stop_reason, usage: self.usage, model: self.model })
    }
}

/// `usage` of the last chunk: OpenAI counts cached tokens inside `prompt_tokens`, OpenRouter adds
/// its `cost` in dollars.
fn usage(wire: &Value) -> Usage {
    let count = |value: &Value| value.as_u64().unwrap_or(0);
    let cache_read_tokens = count(&wire["prompt_tokens_details"]["cached_tokens"]);
    let cache_write_tokens = count(&wire["prompt_tokens_details"]["cache_write_tokens"]);
    Usage {
        input_tokens: count(&wire["prompt_tokens"])
            .saturating_sub(cache_read_tokens.saturating_add(cache_write_tokens)),
        output_tokens: count(&wire["completion_tokens"]),
        cache_read_tokens,
        cache_write_tokens,
        cost_usd: wire["cost"].as_f64(),
    }
}
