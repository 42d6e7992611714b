use dari_protocol::manifest::LlmProvider;
use serde_json::json;

use super::*;
use crate::harness::pi::model::{ApiKey, AssistantBlock, Entry, ModelErrorKind, StopReason, StreamEvent, Usage};
use crate::harness::pi::provider::testing::{
    Decoded, assistant, decode_cut_everywhere, image, text, tool_call, tool_result,
};

fn endpoint() -> Endpoint {
    Endpoint {
        provider: LlmProvider::Anthropic,
        base_url: "https://api.anthropic.com".to_owned(),
        api_key: ApiKey::new("sk-ant-test"),
    }
}

fn request<'a>(system: &'a str, entries: &'a [Entry], tools: &'a [ToolSpec]) -> ModelRequest<'a> {
    ModelRequest { model: "claude-sonnet-4-6", system, entries, tools, max_tokens: 2000 }
}

#[test]
fn the_conversation_becomes_alternating_messages() {
    let entries = [
        Entry::CompactionSummary { summary: "Earlier work.".to_owned(), tokens_before: 10 },
        Entry::User { content: vec![text("Look:"), image("AAAA"), text("")] },
        assistant(vec![
            AssistantBlock::Thinking { thinking: "Signed.".to_owned(), signature: Some("sig".to_owned()) },
            AssistantBlock::Thinking { thinking: "From elsewhere.".to_owned(), signature: None },
            AssistantBlock::Text { text: String::new() },
            AssistantBlock::Text { text: "Reading.".to_owned() },
            tool_call("toolu_1", json!({ "path": "a.png" })),
            tool_call("toolu_2", Value::String("{\"pa".to_owned())),
        ]),
        tool_result("toolu_1", vec![text("Read image"), image("BBBB")], false),
        tool_result("toolu_2", vec![], true),
        Entry::user_text("Thanks."),
    ];
    let spec = ToolSpec {
        name: "read".to_owned(),
        description: "Read a file.".to_owned(),
        parameters: json!({ "type": "object" }),
    };
    let call = call(&endpoint(), &request("Be brief.", &entries, &[spec]));
    assert_eq!(call.url, "https://api.anthropic.com/v1/messages");
    assert_eq!(call.headers, [("x-api-key", "sk-ant-test".to_owned()), ("anthropic-version", "2023-06-01".to_owned())]);
    let png = |data: &str| json!({ "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": data } });
    let expect = json!({
        "model": "claude-sonnet-4-6",
        "max_tokens": 2000,
        "stream": true,
        "system": [{ "type": "text", "text": "Be brief.", "cache_control": { "type": "ephemeral" } }],
        "tools": [{ "name": "read", "description": "Read a file.", "input_schema": { "type": "object" } }],
        "messages": [
            {
                "role": "user",
                "content": [
                    { "type": "text", "text": Entry::summary_text("Earlier work.") },
                    { "type": "text", "text": "Look:" },
                    png("AAAA"),
                ],
            },
            {
                "role": "assistant",
                "content": [
                    { "type": "thinking", "thinking": "Signed.", "signature": "sig" },
                    { "type": "text", "text": "Reading." },
                    { "type": "tool_use", "id": "toolu_1", "name": "read", "input": { "path": "a.png" } },
                    { "type": "tool_use", "id": "toolu_2", "name": "read", "input": {} },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": false,
                        "content": [{ "type": "text", "text": "Read image" }, png("BBBB")],
                    },
                    { "type": "tool_result", "tool_use_id": "toolu_2", "is_error": true },
                    { "type": "text", "text": "Thanks.", "cache_control": { "type": "ephemeral" } },
                ],
            },
        ],
    });
    assert_eq!(call.body, expect, "{:#}", call.body);
}

#[test]
fn tool_results_come_first_in_a_user_turn_and_empty_parts_are_left_out() {
    let entries = [
        assistant(vec![tool_call("toolu_1", json!({}))]),
        Entry::user_text("Steering: also check b."),
        tool_result("toolu_1", vec![text("done")], false),
        assistant(vec![AssistantBlock::Thinking { thinking: "Unsigned.".to_owned(), signature: None }]),
    ];
    let body = call(&endpoint(), &request("", &entries, &[])).body;
    assert_eq!(body.get("system"), None);
    assert_eq!(body.get("tools"), None);
    let user = &body["messages"][1];
    let types: Vec<&str> =
        user["content"].as_array().expect("blocks").iter().filter_map(|block| block["type"].as_str()).collect();
    assert_eq!(types, ["tool_result", "text"]);
    // The thinking-only turn left nothing to send.
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(2));
}

fn decode(stream: &str) -> Decoded {
    decode_cut_everywhere(|| Decoder::new("Anthropic", "claude-sonnet-4-6"), stream)
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn message_start() -> String {
    let usage = json!({ "input_tokens": 12, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 30, "output_tokens": 1 });
    event(
        "message_start",
        json!({ "type": "message_start", "message": { "model": "claude-sonnet-4-6-20260101", "usage": usage } }),
    )
}

fn block_start(index: u64, block: Value) -> String {
    event("content_block_start", json!({ "type": "content_block_start", "index": index, "content_block": block }))
}

fn block_delta(index: u64, delta: Value) -> String {
    event("content_block_delta", json!({ "type": "content_block_delta", "index": index, "delta": delta }))
}

fn block_stop(index: u64) -> String {
    event("content_block_stop", json!({ "type": "content_block_stop", "index": index }))
}

fn message_end(stop_reason: &str) -> String {
    let delta =
        json!({ "type": "message_delta", "delta": { "stop_reason": stop_reason }, "usage": { "output_tokens": 42 } });
    event("message_delta", delta) + &event("message_stop", json!({ "type": "message_stop" }))
}

#[test]
fn thinking_text_and_tool_use_stream_in() {
    let stream = [
        message_start(),
        event("ping", json!({ "type": "ping" })),
        block_start(0, json!({ "type": "thinking", "thinking": "" })),
        block_delta(0, json!({ "type": "thinking_delta", "thinking": "Let me réad." })),
        block_delta(0, json!({ "type": "signature_delta", "signature": "EqQB" })),
        block_stop(0),
        block_start(1, json!({ "type": "text", "text": "" })),
        block_delta(1, json!({ "type": "text_delta", "text": "Réading 😀" })),
        block_stop(1),
        block_start(2, json!({ "type": "tool_use", "id": "toolu_1", "name": "read", "input": {} })),
        block_delta(2, json!({ "type": "input_json_delta", "partial_json": "" })),
        block_delta(2, json!({ "type": "input_json_delta", "partial_json": "{\"path\": \"a" })),
        block_delta(2, json!({ "type": "input_json_delta", "partial_json": ".rs\"}" })),
        block_stop(2),
        block_start(3, json!({ "type": "tool_use", "id": "toolu_2", "name": "ls", "input": {} })),
        block_stop(3),
        message_end("tool_use"),
    ]
    .concat();
    let (events, turn) = decode(&stream);
    assert_eq!(
        events,
        [
            StreamEvent::ThinkingDelta("Let me réad.".to_owned()),
            StreamEvent::TextDelta("Réading 😀".to_owned()),
            StreamEvent::ToolCallStarted { id: "toolu_1".to_owned(), name: "read".to_owned() },
            StreamEvent::ToolCallStarted { id: "toolu_2".to_owned(), name: "ls".to_owned() },
        ]
    );
    let turn = turn.expect("an answer");
    assert_eq!(
        turn.content,
        [
            AssistantBlock::Thinking { thinking: "Let me réad.".to_owned(), signature: Some("EqQB".to_owned()) },
            AssistantBlock::Text { text: "Réading 😀".to_owned() },
            AssistantBlock::ToolCall {
                id: "toolu_1".to_owned(),
                name: "read".to_owned(),
                arguments: json!({ "path": "a.rs" })
            },
            AssistantBlock::ToolCall { id: "toolu_2".to_owned(), name: "ls".to_owned(), arguments: json!({}) },
        ]
    );
    assert_eq!(turn.stop_reason, StopReason::ToolUse);
    assert_eq!(turn.model, "claude-sonnet-4-6-20260101");
    let usage =
        Usage { input_tokens: 12, output_tokens: 42, cache_read_tokens: 100, cache_write_tokens: 30, cost_usd: None };
    assert_eq!(turn.usage, usage);
}

#[test]
fn stop_reasons_map_to_ours() {
    let text_answer = |stop_reason: &str| {
        let text = block_start(0, json!({ "type": "text", "text": "Hi" }));
        decode(&[message_start(), text, block_stop(0), message_end(stop_reason)].concat()).1
    };
    let stop_reason = |reason| text_answer(reason).expect("an answer").stop_reason;
    assert_eq!(stop_reason("end_turn"), StopReason::Stop);
    assert_eq!(stop_reason("stop_sequence"), StopReason::Stop);
    assert_eq!(stop_reason("max_tokens"), StopReason::Length);
    assert_eq!(text_answer("end_turn").expect("an answer").text(), "Hi");
    let refused = text_answer("refusal").expect_err("a refusal");
    assert_eq!(refused.kind, ModelErrorKind::Rejected);
}

#[track_caller]
fn check_error(stream: &str, expect_kind: ModelErrorKind, expect_message: &str) {
    let error = decode(stream).1.expect_err("no answer");
    assert_eq!((error.kind, error.message.as_str()), (expect_kind, expect_message));
}

#[test]
fn a_stream_that_ends_early_or_goes_wrong_is_an_error() {
    let started = message_start() + &block_start(0, json!({ "type": "text", "text": "" }));
    let ended = "the stream from Anthropic ended before the answer did";
    check_error(&started, ModelErrorKind::Connection, ended);
    let delta = json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn" } });
    check_error(&(started.clone() + &event("message_delta", delta)), ModelErrorKind::Connection, ended);

    let overloaded = json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } });
    check_error(
        &(started.clone() + &event("error", overloaded)),
        ModelErrorKind::ServerError,
        "Anthropic reported an error: Overloaded",
    );
    let too_long = json!({ "type": "error", "error": { "type": "invalid_request_error", "message": "prompt is too long: 201000 tokens > 200000 maximum" } });
    check_error(
        &event("error", too_long),
        ModelErrorKind::ContextOverflow,
        "Anthropic reported an error: prompt is too long: 201000 tokens > 200000 maximum",
    );
    check_error(
        &(started.clone() + "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \n\n"),
        ModelErrorKind::BadResponse,
        "Anthropic sent an event that is not JSON (EOF while parsing a value at line 1 column 43): {\"type\": \"content_block_delta\", \"index\": 0,",
    );
    check_error(
        &(started + &block_delta(5, json!({ "type": "text_delta", "text": "x" }))),
        ModelErrorKind::BadResponse,
        "Anthropic sent a delta for content block 5, which never started",
    );
}
