//! Helpers the wire formats' tests share: conversation entries in a line, and decoding a literal
//! stream cut at every place.

use dari_protocol::tools::ContentBlock;
use serde_json::Value;

use super::sse::SseParser;
use super::{DEFAULT_MAX_EVENT_BYTES, Decoder, decode_chunk, decode_end};
use crate::harness::pi::model::{
    AssistantBlock, AssistantTurn, Entry, ModelError, StopReason, StreamEvent, ToolResultEntry, Usage,
};

pub fn text(text: &str) -> ContentBlock {
    ContentBlock::Text { text: text.to_owned() }
}

/// A PNG image of base64 `data`.
pub fn image(data: &str) -> ContentBlock {
    ContentBlock::Image { data: data.to_owned(), mime_type: "image/png".to_owned() }
}

/// The result of a call of the `read` tool.
pub fn tool_result(id: &str, content: Vec<ContentBlock>, is_error: bool) -> Entry {
    let result = ToolResultEntry { tool_call_id: id.to_owned(), tool_name: "read".to_owned(), content, is_error };
    Entry::ToolResult(result)
}

pub fn assistant(content: Vec<AssistantBlock>) -> Entry {
    let turn =
        AssistantTurn { content, stop_reason: StopReason::ToolUse, usage: Usage::default(), model: "m".to_owned() };
    Entry::Assistant(turn)
}

/// A call of the `read` tool.
pub fn tool_call(id: &str, arguments: Value) -> AssistantBlock {
    AssistantBlock::ToolCall { id: id.to_owned(), name: "read".to_owned(), arguments }
}

/// What decoding a stream gave: the events reported, then the answer or the error.
pub type Decoded = (Vec<StreamEvent>, Result<AssistantTurn, ModelError>);

/// Decodes `stream` whole, cut in two at every byte, and one byte at a time, checks that every
/// way gives the same, and returns it.
#[track_caller]
pub fn decode_cut_everywhere<D: Decoder>(new_decoder: impl Fn() -> D, stream: &str) -> Decoded {
    let stream = stream.as_bytes();
    let whole = decode(new_decoder(), &[stream]);
    for cut in 1..stream.len() {
        let halves = decode(new_decoder(), &[&stream[..cut], &stream[cut..]]);
        assert_eq!(halves, whole, "cut at byte {cut}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(decode(new_decoder(), &bytes), whole, "one byte at a time");
    whole
}

fn decode<D: Decoder>(mut decoder: D, chunks: &[&[u8]]) -> Decoded {
    let mut events = Vec::new();
    let mut on_event = |event| events.push(event);
    let mut parser = SseParser::new(DEFAULT_MAX_EVENT_BYTES);
    for chunk in chunks {
        match decode_chunk(&mut parser, &mut decoder, chunk, &mut on_event) {
            Ok(false) => {}
            Ok(true) => return (events, decoder.finish()),
            Err(error) => return (events, Err(error)),
        }
    }
    let result = decode_end(parser, decoder, &mut on_event);
    (events, result)
}
