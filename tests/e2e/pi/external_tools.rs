//! External tools: the model's call waits for the client's `tool.result_submitted`, which is
//! checked against the tool's output schema; a call nobody answers times out into an error the
//! model reads.

use dari_tests::control::Engine;
use dari_tests::fake_llm::{FakeLlm, Reply, ScriptedToolCall};
use reqwest::StatusCode;
use serde_json::json;

use super::{deploy, events, manifest, of_type, server};
use crate::execution::{finished, new_session, send, wait_for_event};

fn lookup_tool(timeout_seconds: u32) -> (String, Vec<(&'static str, &'static str)>) {
    let manifest = manifest(&format!(
        "custom_tools:\n  - name: lookup\n    path: tools/lookup\n    kind: external\n    timeout_seconds: {timeout_seconds}\n"
    ));
    let files = vec![
        (
            "tools/lookup/tool.yml",
            "name: lookup\ndescription: Look a fact up in the company wiki.\ninput_schema: input.schema.json\noutput_schema: output.schema.json\n",
        ),
        (
            "tools/lookup/input.schema.json",
            r#"{"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}"#,
        ),
        (
            "tools/lookup/output.schema.json",
            r#"{"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}"#,
        ),
    ];
    (manifest, files)
}

#[tokio::test]
async fn an_external_tool_waits_for_the_client_whose_result_must_match_the_output_schema() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let (manifest, files) = lookup_tool(600);
    let agent = deploy(&control, &manifest, &files).await;
    let session_id = new_session(&control, &agent).await;
    fake.push(Reply::tool_calls([ScriptedToolCall::new(
        "call_lookup",
        "lookup",
        &json!({"query": "capital of France"}),
    )]));
    fake.push(Reply::text("It is Paris."));

    let message_id = send(&control, &session_id, "What is the capital of France?").await;
    let requested = wait_for_event(&control, &session_id, |event| event["type"] == "tool.call_requested").await;
    assert_eq!(requested["data"]["tool_name"], "lookup");
    assert_eq!(requested["data"]["tool_call_id"], "call_lookup");
    assert_eq!(requested["data"]["arguments"], json!({"query": "capital of France"}));
    assert_eq!(requested["data"]["kind"], "external");
    assert!(requested["data"]["expires_at"].is_string(), "{requested}");
    wait_for_event(&control, &session_id, |event| {
        event["type"] == "message.status_changed" && event["data"]["status"] == "waiting_for_tool"
    })
    .await;
    assert_eq!(fake.requests().len(), 1, "the model waits for the result");

    let submit = |result: serde_json::Value| json!({"type": "tool.result_submitted", "message_id": message_id, "tool_call_id": "call_lookup", "result": result});
    let path = format!("/v1/sessions/{session_id}/events");
    let (status, refused) = control.post(&path, &submit(json!({"answer": 42}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let detail = refused["detail"].as_str().expect("a detail");
    assert!(detail.contains("output_schema of tool lookup") && detail.contains("/answer"), "{detail}");

    let (status, accepted) = control.post(&path, &submit(json!({"answer": "Paris"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "completed", "{message}");
    assert_eq!(message["output"]["parts"].as_array().expect("parts").last().expect("a part")["text"], "It is Paris.");
    let results = fake.requests()[1].tool_results();
    assert_eq!(results.len(), 1);
    assert!(!results[0].is_error && results[0].text.contains("Paris"), "{:?}", results[0]);

    for result in [json!({"answer": "Lyon"}), json!({"answer": 1})] {
        let (status, again) = control.post(&path, &submit(result)).await;
        assert_eq!(status, StatusCode::CONFLICT, "a call takes one result, whatever the second one is: {again}");
    }
}

#[tokio::test]
async fn an_external_tool_nobody_answers_gives_the_model_a_timeout_error() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let (manifest, files) = lookup_tool(1);
    let agent = deploy(&control, &manifest, &files).await;
    let session_id = new_session(&control, &agent).await;
    fake.push(Reply::tool_calls([ScriptedToolCall::new("call_lookup", "lookup", &json!({"query": "anything"}))]));
    fake.push(Reply::text("The wiki did not answer."));

    let message_id = send(&control, &session_id, "Look it up").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "completed", "{message}");
    let results = fake.requests()[1].tool_results();
    assert!(results[0].text.contains("did not return a result within 1s"), "{:?}", results[0]);
    let part = &message["output"]["parts"][1];
    assert_eq!((&part["type"], &part["is_error"]), (&json!("tool_result"), &json!(true)), "{message}");
    let events = events(&control, &session_id).await;
    let failed = of_type(&events, "tool.call_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["details"]["timed_out"], true, "{}", failed[0]);
}

#[tokio::test]
async fn a_message_waiting_for_a_client_still_ends_at_the_message_timeout() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).args(["--pi-message-timeout", "2s"]).start().await;
    let (manifest, files) = lookup_tool(600);
    let agent = deploy(&control, &manifest, &files).await;
    let session_id = new_session(&control, &agent).await;
    fake.push(Reply::tool_calls([ScriptedToolCall::new("call_lookup", "lookup", &json!({"query": "anything"}))]));

    let message_id = send(&control, &session_id, "Look it up").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "failed", "{message}");
    assert_eq!(message["output"]["error"]["type"], "message_timeout", "{message}");
    assert_eq!(fake.requests().len(), 1);

    // The session takes the next message; the unanswered call gets pi's stand-in result.
    fake.push(Reply::text("next"));
    let next = send(&control, &session_id, "next").await;
    assert_eq!(finished(&control, &session_id, &next).await["status"], "completed");
    let results = fake.requests()[1].tool_results();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].text, "No result provided");
}
