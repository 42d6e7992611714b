//! What the two wire formats share: the answer they render, the server-sent event frames a
//! stream is made of, and how text is split into the fragments a real model streams.

use serde_json::Value;

use super::WireFormat;
use super::script::{ScriptedToolCall, ScriptedUsage};
use super::{anthropic, openai};

/// How many fragments a text or a tool call's arguments are streamed in, at most.
const FRAGMENTS: usize = 3;

/// One answer to render, borrowed from the reply and the request.
#[derive(Debug)]
pub(super) struct Answer<'a> {
    /// Which model call of the fake this is (1 for the first), for the message id.
    pub number: usize,
    /// The model the request named.
    pub model: &'a str,
    pub text: Option<&'a str>,
    pub tool_calls: &'a [ScriptedToolCall],
    pub usage: &'a ScriptedUsage,
}

/// One server-sent event: `event: …` (Anthropic names its events) and `data: …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Frame {
    pub event: Option<&'static str>,
    pub data: String,
}

// === impl WireFormat ===

impl WireFormat {
    /// The frames of a streamed answer, in order, the end of the stream included.
    pub(super) fn stream_frames(self, answer: &Answer<'_>) -> Vec<Frame> {
        match self {
            WireFormat::OpenAi => openai::stream_frames(answer),
            WireFormat::Anthropic => anthropic::stream_frames(answer),
        }
    }

    /// The answer to a request without `stream: true`.
    pub(super) fn whole_answer(self, answer: &Answer<'_>) -> Value {
        match self {
            WireFormat::OpenAi => openai::whole_answer(answer),
            WireFormat::Anthropic => anthropic::whole_answer(answer),
        }
    }

    /// The body of an error answer with this status.
    pub(super) fn error_body(self, status: u16, message: &str) -> Value {
        match self {
            WireFormat::OpenAi => openai::error_body(status, message),
            WireFormat::Anthropic => anthropic::error_body(status, message),
        }
    }
}

// === impl Answer ===

impl Answer<'_> {
    /// Whether the model stops to wait for tool results.
    pub fn calls_tools(&self) -> bool {
        !self.tool_calls.is_empty()
    }
}

// === impl Frame ===

impl Frame {
    /// A frame with only data, as OpenAI sends them.
    pub fn data(data: impl ToString) -> Frame {
        Frame { event: None, data: data.to_string() }
    }

    pub fn event(event: &'static str, data: &Value) -> Frame {
        Frame { event: Some(event), data: data.to_string() }
    }

    /// The frame on the wire, with its blank line.
    pub fn to_sse(&self) -> String {
        match self.event {
            Some(event) => format!("event: {event}\ndata: {}\n\n", self.data),
            None => format!("data: {}\n\n", self.data),
        }
    }
}

/// Splits `text` into a few pieces, as a model streams it; none for an empty text.
pub(super) fn fragments(text: &str) -> Vec<&str> {
    let n_chars = text.chars().count();
    let piece_chars = n_chars.div_ceil(FRAGMENTS).max(1);
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.char_indices().nth(piece_chars).map_or(rest.len(), |(offset, _)| offset);
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// The first half of `text`, cut at a character boundary: JSON that no longer parses.
pub(super) fn first_half(text: &str) -> &str {
    let half = text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(offset, _)| offset);
    &text[..half]
}
