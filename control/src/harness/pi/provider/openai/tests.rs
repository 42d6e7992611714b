use serde_json::json;

use super::*;
use crate::harness::pi::model::{ApiKey, AssistantBlock, ModelErrorKind, StopReason, StreamEvent, Usage};
use crate::harness::pi::provider::testing::{
    Decoded, assistant, decode_cut_everywhere, image, text, tool_call, tool_result,
};

fn endpoint(provider: LlmProvider, base_url: &str) -> Endpoint {
    Endpoint { provider, base_url: base_url.to_owned(), api_key: ApiKey::new("sk-test") }
}

fn request<'a>(entries: &'a [Entry], tools: &'a [ToolSpec]) -> ModelRequest<'a> {
    ModelRequest { model: "gpt-4.1-mini", system: "Be brief.", entries, tools, max_tokens: 1000 }
}

#[test]
fn the_conversation_becomes_chat_messages() {
    let entries = [
        Entry::user_text("Look at these files."),
        Entry::User { content: vec![text("And this picture:"), image("AAAA")] },
        assistant(vec![
            AssistantBlock::Thinking { thinking: "Two reads.".to_owned(), signature: None },
            AssistantBlock::Text { text: "Reading both.".to_owned() },
            tool_call("call_1", json!({ "path": "a.png" })),
            tool_call("call_2", Value::String("{\"path\": ".to_owned())),
        ]),
        tool_result("call_1", vec![text("Read image a.png"), image("BBBB")], false),
        tool_result("call_2", vec![image("CCCC")], false),
        assistant(vec![AssistantBlock::Thinking { thinking: "Only thought.".to_owned(), signature: None }]),
        Entry::CompactionSummary { summary: "Earlier work.".to_owned(), tokens_before: 10 },
    ];
    let call = call(&endpoint(LlmProvider::Openai, "https://api.openai.com/v1/"), &request(&entries, &[]));
    assert_eq!(call.url, "https://api.openai.com/v1/chat/completions");
    assert_eq!(call.headers, [("authorization", "Bearer sk-test".to_owned())]);
    let png =
        |data: &str| json!({ "type": "image_url", "image_url": { "url": format!("data:image/png;base64,{data}") } });
    let expect = json!({
        "model": "gpt-4.1-mini",
        "stream": true,
        "stream_options": { "include_usage": true },
        "max_completion_tokens": 1000,
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "Look at these files." },
            { "role": "user", "content": [{ "type": "text", "text": "And this picture:" }, png("AAAA")] },
            {
                "role": "assistant",
                "content": "Reading both.",
                "tool_calls": [
                    { "id": "call_1", "type": "function", "function": { "name": "read", "arguments": "{\"path\":\"a.png\"}" } },
                    { "id": "call_2", "type": "function", "function": { "name": "read", "arguments": "{\"path\": " } },
                ],
            },
            { "role": "tool", "tool_call_id": "call_1", "content": "Read image a.png" },
            { "role": "tool", "tool_call_id": "call_2", "content": "(see attached image)" },
            { "role": "user", "content": [{ "type": "text", "text": "Attached image(s) from tool result:" }, png("BBBB"), png("CCCC")] },
            { "role": "user", "content": Entry::summary_text("Earlier work.") },
        ],
    });
    assert_eq!(call.body, expect, "{:#}", call.body);
}

#[test]
fn tools_and_the_max_tokens_field_depend_on_where_the_call_goes() {
    let spec = ToolSpec {
        name: "read".to_owned(),
        description: "Read a file.".to_owned(),
        parameters: json!({ "type": "object" }),
    };
    let with_tool_history = [Entry::user_text("hi"), assistant(vec![tool_call("call_1", json!({}))])];
    let body = |provider, base_url, entries: &[Entry], tools: &[ToolSpec]| {
        let body = call(&endpoint(provider, base_url), &request(entries, tools)).body;
        let max_tokens_field =
            ["max_tokens", "max_completion_tokens"].into_iter().find(|field| body.get(*field).is_some());
        (max_tokens_field, body.get("tools").cloned())
    };
    let offered = json!([{ "type": "function", "function": { "name": "read", "description": "Read a file.", "parameters": { "type": "object" } } }]);

    let openai = (LlmProvider::Openai, "https://api.openai.com/v1");
    let openrouter = (LlmProvider::Openrouter, "https://openrouter.ai/api/v1");
    let local = (LlmProvider::Openai, "http://localhost:8000/v1");
    assert_eq!(
        body(openai.0, openai.1, &[], std::slice::from_ref(&spec)),
        (Some("max_completion_tokens"), Some(offered.clone()))
    );
    assert_eq!(body(openrouter.0, openrouter.1, &[], std::slice::from_ref(&spec)), (Some("max_tokens"), Some(offered)));
    assert_eq!(body(local.0, local.1, &[], &[]), (Some("max_tokens"), None));
    // No tool offered although the history has tool calls: `[]`, except to OpenAI itself.
    assert_eq!(body(openrouter.0, openrouter.1, &with_tool_history, &[]), (Some("max_tokens"), Some(json!([]))));
    assert_eq!(body(local.0, local.1, &with_tool_history, &[]), (Some("max_tokens"), Some(json!([]))));
    assert_eq!(body(openai.0, openai.1, &with_tool_history, &[]), (Some("max_completion_tokens"), None));
}

fn decode(stream: &str) -> Decoded {
    decode_cut_everywhere(|| Decoder::new("OpenAI", "gpt-4.1-mini"), stream)
}

fn text_delta(text: &str) -> StreamEvent {
    StreamEvent::TextDelta(text.to_owned())
}

#[test]
fn text_streams_in_and_usage_comes_last() {
    let stream = concat!(
        ": OPENROUTER PROCESSING\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4.1-mini-2025-04-14\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo\"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" wörld 😀\"},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":60}}}\n\n",
        "data: [DONE]\n\n",
    );
    let (events, turn) = decode(stream);
    assert_eq!(events, [text_delta("Héllo"), text_delta(" wörld 😀")]);
    let turn = turn.expect("an answer");
    assert_eq!(turn.content, [AssistantBlock::Text { text: "Héllo wörld 😀".to_owned() }]);
    assert_eq!(turn.stop_reason, StopReason::Stop);
    assert_eq!(turn.model, "gpt-4.1-mini-2025-04-14");
    let usage =
        Usage { input_tokens: 40, output_tokens: 7, cache_read_tokens: 60, cache_write_tokens: 0, cost_usd: None };
    assert_eq!(turn.usage, usage);
}

#[test]
fn parallel_tool_calls_are_assembled_from_fragments_interleaved_by_index() {
    let stream = concat!(
        "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"Both files.\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"read\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"pa\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"ls\",\"arguments\":\"{\\\"path\\\":\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"th\\\": \\\"a.rs\\\"}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\" \\\"src\\\"}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let (events, turn) = decode(stream);
    let started = |id: &str, name: &str| StreamEvent::ToolCallStarted { id: id.to_owned(), name: name.to_owned() };
    assert_eq!(
        events,
        [StreamEvent::ThinkingDelta("Both files.".to_owned()), started("call_a", "read"), started("call_b", "ls")]
    );
    let turn = turn.expect("an answer");
    let call = |id: &str, name: &str, arguments| AssistantBlock::ToolCall {
        id: id.to_owned(),
        name: name.to_owned(),
        arguments,
    };
    assert_eq!(
        turn.content,
        [
            AssistantBlock::Thinking { thinking: "Both files.".to_owned(), signature: None },
            call("call_a", "read", json!({ "path": "a.rs" })),
            call("call_b", "ls", json!({ "path": "src" })),
        ]
    );
    assert_eq!(turn.stop_reason, StopReason::ToolUse);
}

#[test]
fn tool_call_arguments_that_are_not_json_reach_the_harness_as_text() {
    let stream = concat!(
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"function\":{\"name\":\"read\",\"arguments\":\"{\\\"path\\\": \"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"ls\"}}]}}]}\n\n",
        // OpenAI itself ends with `tool_calls`; a call with calls is a tool use whatever it says.
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let turn = decode(stream).1.expect("an answer");
    let arguments: Vec<&Value> = turn.tool_calls().map(|call| call.arguments).collect();
    assert_eq!(arguments, [&json!("{\"path\": "), &json!({})]);
    assert_eq!(turn.stop_reason, StopReason::ToolUse);
}

#[test]
fn openrouter_reports_its_cost_and_reasoning() {
    let stream = concat!(
        "data: {\"model\":\"anthropic/claude-sonnet-4.6\",\"choices\":[{\"delta\":{\"reasoning\":\"Hm.\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"Done.\"},\"finish_reason\":\"length\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"cost\":0.00123,",
        "\"prompt_tokens_details\":{\"cached_tokens\":2,\"cache_write_tokens\":3}}}\n\n",
        "data: [DONE]\n\n",
    );
    let turn = decode(stream).1.expect("an answer");
    assert_eq!(turn.model, "anthropic/claude-sonnet-4.6");
    assert_eq!(turn.stop_reason, StopReason::Length);
    let usage = Usage {
        input_tokens: 5,
        output_tokens: 5,
        cache_read_tokens: 2,
        cache_write_tokens: 3,
        cost_usd: Some(0.00123),
    };
    assert_eq!(turn.usage, usage);
}

#[track_caller]
fn check_error(stream: &str, expect_kind: ModelErrorKind, expect_message: &str) {
    let error = decode(stream).1.expect_err("no answer");
    assert_eq!((error.kind, error.message.as_str()), (expect_kind, expect_message));
}

#[test]
fn a_stream_that_ends_early_or_goes_wrong_is_an_error() {
    let text = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n";
    let ended = "the stream from OpenAI ended before the answer did";
    check_error(text, ModelErrorKind::Connection, ended);
    check_error("", ModelErrorKind::Connection, ended);
    // A finish reason without `[DONE]` is a complete answer.
    let finished = format!("{text}data: {{\"choices\":[{{\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n");
    assert_eq!(decode(&finished).1.expect("an answer").text(), "Hi");

    check_error(
        &format!("{text}data: {{\"choices\": [oops\n\n"),
        ModelErrorKind::BadResponse,
        "OpenAI sent an event that is not JSON (expected value at line 1 column 14): {\"choices\": [oops",
    );
    check_error(
        &format!("{text}data: {{\"error\":{{\"message\":\"The server had an error\",\"type\":\"server_error\"}}}}\n\n"),
        ModelErrorKind::ServerError,
        "OpenAI reported an error: The server had an error",
    );
    check_error(
        &format!("{text}data: {{\"error\":{{\"code\":429,\"message\":\"Rate limited upstream\"}}}}\n\n"),
        ModelErrorKind::RateLimited,
        "OpenAI reported an error: Rate limited upstream",
    );
    check_error(
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"content_filter\"}]}\n\n",
        ModelErrorKind::Rejected,
        "OpenAI stopped the answer with its content filter",
    );
    check_error(
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"arguments\":\"{}\"}}]}}]}\n\ndata: [DONE]\n\n",
        ModelErrorKind::BadResponse,
        "OpenAI sent a tool call with no name (index 0)",
    );
}
