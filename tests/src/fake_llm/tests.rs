//! The fake driven over HTTP with reqwest: each reply kind's frames in both formats, summed up
//! one line a frame, then the script, the recording and the request inspectors.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::wire::fragments;
use super::{FakeLlm, Gate, RecordedRequest, Reply, ScriptedToolCall, ScriptedUsage, UNSCRIPTED_REPLY, WireFormat};
use crate::sse::{SseMessage, SseReader};

const OPENAI: WireFormat = WireFormat::OpenAi;
const ANTHROPIC: WireFormat = WireFormat::Anthropic;

/// How long a test waits on the fake for anything it should send at once.
const PROMPT: Duration = Duration::from_secs(10);

/// The usage chunk of an OpenAI stream with the default usage, summed up.
const OPENAI_DEFAULT_USAGE: &str = r#"usage {"completion_tokens":20,"completion_tokens_details":{"reasoning_tokens":0},"prompt_tokens":100,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":120}"#;

/// The first event of the first Anthropic stream of a fake, with the default usage, summed up.
const ANTHROPIC_DEFAULT_START: &str = r#"message_start msg_fake_1 claude-test {"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"input_tokens":100,"output_tokens":1}"#;

#[tokio::test]
async fn a_text_reply_streams_in_fragments_then_finishes_with_usage() {
    let reply = || Reply::text("Hello, world!");
    check_stream(
        OPENAI,
        reply(),
        &[
            "role assistant, content \"\"",
            "content \"Hello\"",
            "content \", wor\"",
            "content \"ld!\"",
            "finish stop",
            OPENAI_DEFAULT_USAGE,
            "[DONE]",
            "(end)",
        ],
    )
    .await;
    check_stream(
        ANTHROPIC,
        reply(),
        &[
            ANTHROPIC_DEFAULT_START,
            "ping",
            r#"content_block_start 0 {"text":"","type":"text"}"#,
            "content_block_delta 0 text_delta \"Hello\"",
            "content_block_delta 0 text_delta \", wor\"",
            "content_block_delta 0 text_delta \"ld!\"",
            "content_block_stop 0",
            "message_delta end_turn output_tokens 20",
            "message_stop",
            "(end)",
        ],
    )
    .await;
}

#[tokio::test]
async fn tool_calls_stream_their_names_then_their_arguments_in_fragments() {
    let reply = || Reply::ToolCalls {
        text: Some("Looking.".to_owned()),
        calls: vec![
            ScriptedToolCall::new("call_1", "bash", &json!({"command": "ls"})),
            ScriptedToolCall::raw("call_2", "read", "{\"path\": oops"),
        ],
    };
    check_stream(
        OPENAI,
        reply(),
        &[
            "role assistant, content \"\"",
            "content \"Loo\"",
            "content \"kin\"",
            "content \"g.\"",
            "tool_call 0 call_1 bash",
            "arguments 0 \"{\\\"comm\"",
            "arguments 0 \"and\\\":\\\"\"",
            "arguments 0 \"ls\\\"}\"",
            "tool_call 1 call_2 read",
            "arguments 1 \"{\\\"pat\"",
            "arguments 1 \"h\\\": o\"",
            "arguments 1 \"ops\"",
            "finish tool_calls",
            OPENAI_DEFAULT_USAGE,
            "[DONE]",
            "(end)",
        ],
    )
    .await;
    check_stream(
        ANTHROPIC,
        reply(),
        &[
            ANTHROPIC_DEFAULT_START,
            "ping",
            r#"content_block_start 0 {"text":"","type":"text"}"#,
            "content_block_delta 0 text_delta \"Loo\"",
            "content_block_delta 0 text_delta \"kin\"",
            "content_block_delta 0 text_delta \"g.\"",
            "content_block_stop 0",
            r#"content_block_start 1 {"id":"call_1","input":{},"name":"bash","type":"tool_use"}"#,
            "content_block_delta 1 input_json_delta \"\"",
            "content_block_delta 1 input_json_delta \"{\\\"comm\"",
            "content_block_delta 1 input_json_delta \"and\\\":\\\"\"",
            "content_block_delta 1 input_json_delta \"ls\\\"}\"",
            "content_block_stop 1",
            r#"content_block_start 2 {"id":"call_2","input":{},"name":"read","type":"tool_use"}"#,
            "content_block_delta 2 input_json_delta \"\"",
            "content_block_delta 2 input_json_delta \"{\\\"pat\"",
            "content_block_delta 2 input_json_delta \"h\\\": o\"",
            "content_block_delta 2 input_json_delta \"ops\"",
            "content_block_stop 2",
            "message_delta tool_use output_tokens 20",
            "message_stop",
            "(end)",
        ],
    )
    .await;
}

#[tokio::test]
async fn tool_calls_without_text_open_no_text() {
    let reply = || Reply::tool_calls([ScriptedToolCall::new("call_9", "noop", &json!({}))]);
    let openai = stream_lines(OPENAI, reply()).await;
    assert_eq!(
        openai[..4],
        ["role assistant, content null", "tool_call 0 call_9 noop", "arguments 0 \"{\"", "arguments 0 \"}\""]
    );
    let anthropic = stream_lines(ANTHROPIC, reply()).await;
    assert_eq!(anthropic[2], r#"content_block_start 0 {"id":"call_9","input":{},"name":"noop","type":"tool_use"}"#);
}

#[tokio::test]
async fn scripted_usage_reports_the_cache_and_the_cost() {
    let usage = ScriptedUsage {
        input_tokens: 7,
        output_tokens: 3,
        cache_read_tokens: 50,
        cache_write_tokens: 5,
        cost_usd: Some(0.25),
    };
    let reply = || Reply::text("ok").with_usage(usage.clone());
    let openai = stream_lines(OPENAI, reply()).await;
    assert_eq!(
        openai[openai.len() - 3],
        r#"usage {"completion_tokens":3,"completion_tokens_details":{"reasoning_tokens":0},"cost":0.25,"prompt_tokens":62,"prompt_tokens_details":{"cached_tokens":50},"total_tokens":65}"#
    );
    let anthropic = stream_lines(ANTHROPIC, reply()).await;
    assert_eq!(
        anthropic[0],
        r#"message_start msg_fake_1 claude-test {"cache_creation_input_tokens":5,"cache_read_input_tokens":50,"input_tokens":7,"output_tokens":1}"#
    );
    assert!(anthropic.contains(&"message_delta end_turn output_tokens 3".to_owned()), "{anthropic:#?}");
}

#[tokio::test]
async fn a_malformed_reply_breaks_its_json_half_way_and_ends_as_usual() {
    let openai = stream_lines(OPENAI, Reply::Malformed).await;
    assert!(openai[3].starts_with("not JSON: {\"choices\""), "{openai:#?}");
    assert_eq!(openai[openai.len() - 2..], ["[DONE]", "(end)"]);
    let anthropic = stream_lines(ANTHROPIC, Reply::Malformed).await;
    assert!(anthropic[4].starts_with("not JSON: {\"delta\""), "{anthropic:#?}");
    assert_eq!(anthropic[anthropic.len() - 2..], ["message_stop", "(end)"]);
}

#[tokio::test]
async fn a_reply_cut_mid_stream_sends_some_text_then_breaks_the_connection() {
    check_stream(
        OPENAI,
        Reply::CutMidStream,
        &[
            "role assistant, content \"\"",
            "content \"This answer breaks off \"",
            "content \"before it ends, as a fl\"",
            "(cut)",
        ],
    )
    .await;
    let anthropic = stream_lines(ANTHROPIC, Reply::CutMidStream).await;
    assert_eq!(anthropic.len(), 5, "{anthropic:#?}");
    assert_eq!(anthropic[3], "content_block_delta 0 text_delta \"This answer breaks off \"");
    assert_eq!(anthropic[4], "(cut)");
}

#[tokio::test]
async fn an_error_status_carries_the_providers_error_body_and_retry_after() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::rate_limited("1"));
    fake.push(Reply::rate_limited("1"));
    for format in [OPENAI, ANTHROPIC] {
        let response = ask(&fake, format, true).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.expect("an error body");
        let expected = match format {
            WireFormat::OpenAi => json!({"error": {
                "message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded",
            }}),
            WireFormat::Anthropic => {
                json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
            }
        };
        assert_eq!(body, expected);
    }

    for (status, openai_type, anthropic_type) in [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "invalid_request_error", "authentication_error"),
        (500, "server_error", "api_error"),
        (529, "server_error", "overloaded_error"),
    ] {
        fake.push(Reply::status(status, "no"));
        fake.push(Reply::status(status, "no"));
        let openai = ask(&fake, OPENAI, false).await;
        assert_eq!(openai.status(), status);
        assert!(openai.headers().get("retry-after").is_none());
        let openai: Value = openai.json().await.expect("an error body");
        assert_eq!((&openai["error"]["type"], &openai["error"]["message"]), (&json!(openai_type), &json!("no")));
        let anthropic: Value = ask(&fake, ANTHROPIC, false).await.json().await.expect("an error body");
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"], json!({"type": anthropic_type, "message": "no"}));
    }
}

#[tokio::test]
async fn requests_without_stream_get_one_whole_answer() {
    let fake = FakeLlm::start().await;
    let reply = || {
        Reply::tool_calls([
            ScriptedToolCall::new("call_1", "bash", &json!({"command": "ls"})),
            ScriptedToolCall::raw("call_2", "bash", "{oops"),
        ])
    };
    fake.push(reply());
    fake.push(reply());
    fake.push(Reply::text("plain"));
    let openai: Value = ask(&fake, OPENAI, false).await.json().await.expect("a chat completion");
    assert_eq!(openai["object"], "chat.completion");
    assert_eq!(openai["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(openai["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(
        openai["choices"][0]["message"]["tool_calls"],
        json!([
            {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": r#"{"command":"ls"}"#}},
            {"id": "call_2", "type": "function", "function": {"name": "bash", "arguments": "{oops"}},
        ])
    );
    assert_eq!(openai["usage"]["total_tokens"], 120);
    let anthropic: Value = ask(&fake, ANTHROPIC, false).await.json().await.expect("a message");
    assert_eq!(anthropic["id"], "msg_fake_2");
    assert_eq!(anthropic["stop_reason"], "tool_use");
    assert_eq!(
        anthropic["content"],
        json!([
            {"type": "tool_use", "id": "call_1", "name": "bash", "input": {"command": "ls"}},
            {"type": "tool_use", "id": "call_2", "name": "bash", "input": "{oops"},
        ])
    );
    let text: Value = ask(&fake, ANTHROPIC, false).await.json().await.expect("a message");
    assert_eq!(
        (&text["content"], &text["stop_reason"]),
        (&json!([{"type": "text", "text": "plain"}]), &json!("end_turn"))
    );
}

#[tokio::test]
async fn a_whole_answer_can_be_malformed_or_cut() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::Malformed);
    fake.push(Reply::CutMidStream);
    let malformed = ask(&fake, OPENAI, false).await.text().await.expect("a body");
    assert!(serde_json::from_str::<Value>(&malformed).is_err(), "{malformed}");
    assert!(malformed.starts_with('{'), "{malformed}");
    let cut = ask(&fake, ANTHROPIC, false).await.text().await;
    assert!(cut.is_err(), "the body breaks off: {cut:?}");
}

#[tokio::test]
async fn a_hanging_reply_never_answers_until_the_fake_stops() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::Hang);
    let mut pending = tokio::spawn(ask_raw(fake.openai_base_url() + "/chat/completions", openai_body(true)));
    fake.wait_for_requests(1).await;
    let answered = tokio::time::timeout(Duration::from_millis(200), &mut pending).await;
    assert!(answered.is_err(), "the hanging request was answered: {answered:?}");
    drop(fake);
    let outcome = tokio::time::timeout(PROMPT, pending).await.expect("the stopped fake lets go").expect("the task");
    match outcome {
        Err(_) => {}
        Ok(response) => assert!(response.text().await.is_err(), "the stopped fake sent no answer"),
    }
}

#[tokio::test]
async fn a_gated_stream_holds_half_way_until_released() {
    let fake = FakeLlm::start().await;
    let gate = Gate::new();
    fake.push(Reply::text("Hello, world!").gated(&gate));
    let mut reader = SseReader::new(ask(&fake, OPENAI, true).await);
    gate.wait_until_held().await;
    let mut before = Vec::new();
    for _ in 0..3 {
        before.push(summary(OPENAI, &next(&mut reader).await.expect("a frame before the gate")));
    }
    assert_eq!(before, ["role assistant, content \"\"", "content \"Hello\"", "content \", wor\""]);
    let held = reader.try_next_message(Duration::from_millis(200)).await;
    assert!(held.is_err(), "nothing passes the gate before it opens: {held:?}");
    gate.release();
    let after = next(&mut reader).await.expect("the rest after the gate");
    assert_eq!(summary(OPENAI, &after), "content \"ld!\"");
}

#[tokio::test]
async fn a_gated_status_holds_before_the_response() {
    let fake = FakeLlm::start().await;
    let gate = Gate::new();
    fake.push(Reply::status(500, "boom").gated(&gate));
    let pending = tokio::spawn(ask_raw(format!("{}/v1/messages", fake.url), anthropic_body(true)));
    gate.wait_until_held().await;
    assert!(!pending.is_finished());
    gate.release();
    let response =
        tokio::time::timeout(PROMPT, pending).await.expect("an answer").expect("the task").expect("a response");
    assert_eq!(response.status(), 500);
}

#[tokio::test]
async fn replies_go_in_order_across_formats_then_the_fallback() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::text("first"));
    fake.push(Reply::text("second"));
    let openai: Value = ask(&fake, OPENAI, false).await.json().await.expect("an answer");
    assert_eq!(openai["choices"][0]["message"]["content"], "first");
    let anthropic: Value = ask(&fake, ANTHROPIC, false).await.json().await.expect("an answer");
    assert_eq!(anthropic["content"][0]["text"], "second");
    let unscripted: Value = ask(&fake, ANTHROPIC, false).await.json().await.expect("an answer");
    assert_eq!(unscripted["content"][0]["text"], UNSCRIPTED_REPLY);
    fake.set_fallback(Reply::text("always"));
    for _ in 0..2 {
        let answer: Value = ask(&fake, OPENAI, false).await.json().await.expect("an answer");
        assert_eq!(answer["choices"][0]["message"]["content"], "always");
    }
    fake.push(Reply::text("scripted again"));
    let answer: Value = ask(&fake, OPENAI, false).await.json().await.expect("an answer");
    assert_eq!(answer["choices"][0]["message"]["content"], "scripted again");
}

#[tokio::test]
async fn every_request_is_recorded_and_model_requests_can_be_awaited() {
    let fake = FakeLlm::start().await;
    let http = reqwest::Client::new();
    http.head(&fake.url).send().await.expect("the fake answers");
    let unknown = http.get(format!("{}/v1/unknown", fake.url)).send().await.expect("the fake answers");
    assert_eq!(unknown.status(), 404);
    let waiting = fake.wait_for_requests(2);
    let (requests, ..) = tokio::join!(
        waiting,
        ask_raw(format!("{}/api/v1/chat/completions", fake.url), openai_body(false)),
        ask_raw(format!("{}/v1/messages?beta=true", fake.url), anthropic_body(false)),
    );
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let formats: Vec<_> = fake.requests().iter().map(|request| request.format).collect();
    assert!(formats.contains(&Some(OPENAI)) && formats.contains(&Some(ANTHROPIC)), "{formats:?}");
    let all = fake.all_requests();
    assert_eq!(all.len(), 4);
    assert_eq!((all[0].method.as_str(), all[0].uri.as_str(), all[0].format), ("HEAD", "/", None));
    assert_eq!(all[1].path(), "/v1/unknown");
    let anthropic = all.iter().find(|request| request.format == Some(ANTHROPIC)).expect("the Anthropic request");
    assert_eq!(anthropic.uri, "/v1/messages?beta=true");
    assert_eq!(anthropic.header("X-Api-Key"), Some("sk-test-fake"));
    assert_eq!(anthropic.body["model"], "claude-test");
}

#[tokio::test]
async fn each_model_request_records_when_it_came_and_when_its_answer_went_out() {
    let fake = FakeLlm::start().await;
    let gate = Gate::new();
    fake.push(Reply::text("held").gated(&gate));
    fake.push(Reply::status(503, "down"));
    let before = Instant::now();
    let pending = tokio::spawn(ask_raw(format!("{}/chat/completions", fake.openai_base_url()), openai_body(true)));
    gate.wait_until_held().await;
    let held = &fake.requests()[0];
    assert!(held.received_at >= before);
    assert_eq!(held.answered_at, None, "a stream held half-way has not gone out");

    let released = Instant::now();
    gate.release();
    let response = pending.await.expect("the task").expect("a response");
    response.text().await.expect("the whole stream");
    let read = Instant::now();
    let answered_at = fake.requests()[0].answered_at.expect("the answer went out");
    assert!(released <= answered_at && answered_at <= read, "marked as the last frame went out");

    let status = ask(&fake, OPENAI, false).await;
    assert_eq!(status.status(), 503);
    let since = fake.requests_since(1);
    assert_eq!(since.len(), 1, "{since:#?}");
    assert!(since[0].answered_at.is_some_and(|answered_at| answered_at >= since[0].received_at));
    assert!(fake.requests_since(2).is_empty());
}

#[test]
fn the_inspectors_read_both_formats_alike() {
    let openai = recorded(
        OPENAI,
        json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You are pi.\n<skills>x</skills>"},
                {"role": "user", "content": "list files"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": "{}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "README.md\n"},
                {"role": "user", "content": [{"type": "text", "text": "and then?"}]},
            ],
            "tools": [{"type": "function", "function": {"name": "bash", "parameters": {}}},
                      {"type": "function", "function": {"name": "read", "parameters": {}}}],
        }),
    );
    let anthropic = recorded(
        ANTHROPIC,
        json!({
            "model": "claude-test",
            "system": [{"type": "text", "text": "You are pi.\n<skills>x</skills>", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "list files"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "bash", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "README.md\n"}]},
                    {"type": "text", "text": "and then?"},
                ]},
            ],
            "tools": [{"name": "bash", "input_schema": {}}, {"name": "read", "input_schema": {}}],
        }),
    );
    for request in [&openai, &anthropic] {
        assert!(request.system_prompt().expect("a system prompt").contains("<skills>"), "{request:#?}");
        assert_eq!(request.tool_names(), ["bash", "read"]);
        assert_eq!(request.last_user_text().as_deref(), Some("and then?"));
        assert_eq!(request.tool_result_texts(), ["README.md\n"]);
        assert_eq!(request.tool_results()[0].tool_call_id, "call_1");
        let texts: Vec<_> = request.message_texts().into_iter().map(|(role, text)| format!("{role}: {text}")).collect();
        assert_eq!(texts, ["user: list files", "user: and then?"]);
    }
    let error_result = recorded(
        ANTHROPIC,
        json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": "failed", "is_error": true},
        ]}]}),
    );
    assert!(error_result.tool_results()[0].is_error);
    assert_eq!(error_result.last_user_text(), None, "a message of only tool results has no user text");
    assert_eq!(error_result.system_prompt(), None);
}

#[test]
fn text_is_split_into_a_few_fragments_at_character_boundaries() {
    assert_eq!(fragments(""), Vec::<&str>::new());
    assert_eq!(fragments("a"), ["a"]);
    assert_eq!(fragments("abcd"), ["ab", "cd"]);
    assert_eq!(fragments("héllo wörld"), ["héll", "o wö", "rld"]);
}

// === helpers ===

/// Streams `reply` from a fresh fake in `format` and compares the frames, summed up.
async fn check_stream(format: WireFormat, reply: Reply, expected: &[&str]) {
    assert_eq!(stream_lines(format, reply).await, expected, "{format:?}");
}

/// Each frame of the streamed answer to `reply`, summed up in a line, and how the stream ended:
/// `(end)`, or `(cut)` when the connection broke.
async fn stream_lines(format: WireFormat, reply: Reply) -> Vec<String> {
    let fake = FakeLlm::start().await;
    fake.push(reply);
    let response = ask(&fake, format, true).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut reader = SseReader::new(response);
    let mut lines = Vec::new();
    loop {
        match reader.try_next_message(PROMPT).await {
            Ok(Some(message)) => lines.push(summary(format, &message)),
            Ok(None) => break lines.push("(end)".to_owned()),
            Err(_) => break lines.push("(cut)".to_owned()),
        }
    }
    lines
}

async fn next(reader: &mut SseReader) -> Option<SseMessage> {
    reader.try_next_message(PROMPT).await.expect("a frame in time")
}

/// One frame in a line: what a client reads from it. Checks the fields every frame carries.
fn summary(format: WireFormat, message: &SseMessage) -> String {
    if message.data == "[DONE]" {
        return "[DONE]".to_owned();
    }
    let Ok(data) = serde_json::from_str::<Value>(&message.data) else {
        return format!("not JSON: {}", message.data);
    };
    match format {
        WireFormat::OpenAi => openai_summary(&data),
        WireFormat::Anthropic => {
            assert_eq!(message.event.as_deref(), data["type"].as_str(), "the event names its data's type");
            anthropic_summary(&data)
        }
    }
}

fn openai_summary(chunk: &Value) -> String {
    assert_eq!((&chunk["object"], &chunk["model"]), (&json!("chat.completion.chunk"), &json!("gpt-test")), "{chunk}");
    assert!(chunk["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-fake-")), "{chunk}");
    if chunk["choices"] == json!([]) {
        return format!("usage {}", chunk["usage"]);
    }
    let choice = &chunk["choices"][0];
    let delta = &choice["delta"];
    if let Some(reason) = choice["finish_reason"].as_str() {
        return format!("finish {reason}");
    }
    if let Some(role) = delta["role"].as_str() {
        return format!("role {role}, content {}", delta["content"]);
    }
    if let Some(content) = delta.get("content") {
        return format!("content {content}");
    }
    let call = &delta["tool_calls"][0];
    if let Some(id) = call["id"].as_str() {
        assert_eq!((&call["type"], &call["function"]["arguments"]), (&json!("function"), &json!("")));
        return format!("tool_call {} {id} {}", call["index"], call["function"]["name"].as_str().unwrap_or_default());
    }
    format!("arguments {} {}", call["index"], call["function"]["arguments"])
}

fn anthropic_summary(data: &Value) -> String {
    let kind = data["type"].as_str().unwrap_or_default();
    match kind {
        "message_start" => {
            let message = &data["message"];
            let model = message["model"].as_str().unwrap_or_default();
            format!("{kind} {} {model} {}", message["id"].as_str().unwrap_or_default(), message["usage"])
        }
        "content_block_start" => format!("{kind} {} {}", data["index"], data["content_block"]),
        "content_block_delta" => {
            let delta = &data["delta"];
            let fragment = delta.get("text").or_else(|| delta.get("partial_json")).unwrap_or(&Value::Null);
            format!("{kind} {} {} {fragment}", data["index"], delta["type"].as_str().unwrap_or_default())
        }
        "content_block_stop" => format!("{kind} {}", data["index"]),
        "message_delta" => format!(
            "{kind} {} output_tokens {}",
            data["delta"]["stop_reason"].as_str().unwrap_or_default(),
            data["usage"]["output_tokens"]
        ),
        _ => kind.to_owned(),
    }
}

/// Asks the fake's endpoint for `format`, as a client of that provider would.
async fn ask(fake: &FakeLlm, format: WireFormat, stream: bool) -> reqwest::Response {
    let asked = match format {
        WireFormat::OpenAi => ask_raw(format!("{}/chat/completions", fake.openai_base_url()), openai_body(stream)),
        WireFormat::Anthropic => ask_raw(format!("{}/v1/messages", fake.anthropic_base_url()), anthropic_body(stream)),
    };
    asked.await.expect("the fake answers")
}

async fn ask_raw(url: String, body: Value) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new().post(url).header("x-api-key", "sk-test-fake").json(&body).send().await
}

fn openai_body(stream: bool) -> Value {
    json!({"model": "gpt-test", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

fn anthropic_body(stream: bool) -> Value {
    json!({"model": "claude-test", "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

fn recorded(format: WireFormat, body: Value) -> RecordedRequest {
    RecordedRequest {
        method: "POST".to_owned(),
        uri: "/".to_owned(),
        headers: Default::default(),
        body,
        format: Some(format),
        received_at: Instant::now(),
        answered_at: None,
    }
}
