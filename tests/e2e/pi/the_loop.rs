//! The loop: the model calls tools, the sandbox runs them, every step is recorded; guards,
//! skills and live text.

use dari_tests::control::Engine;
use dari_tests::fake_llm::{FakeLlm, Reply, ScriptedToolCall};
use dari_tests::sse::SseReader;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{INSTRUCTIONS, PLATFORM_KEY, deploy, events, file, manifest, of_type, part_types, server, workspace_zip};
use crate::execution::{finished, new_session, send};

#[tokio::test]
async fn asked_to_create_a_file_the_model_writes_reads_and_answers_and_every_step_is_recorded() {
    for engine in Engine::available() {
        let fake = FakeLlm::start().await;
        let control = server(engine, &fake).start().await;
        let agent = deploy(&control, &manifest(""), &[]).await;
        let session_id = new_session(&control, &agent).await;
        fake.push(Reply::tool_calls([ScriptedToolCall::new(
            "call_write",
            "write",
            &json!({"path": "notes/hello.txt", "content": "hello from pi\n"}),
        )]));
        fake.push(Reply::tool_calls([ScriptedToolCall::new("call_read", "read", &json!({"path": "notes/hello.txt"}))]));
        fake.push(Reply::text("notes/hello.txt says: hello from pi"));

        let message_id =
            send(&control, &session_id, "Create notes/hello.txt saying hello from pi, then read it.").await;
        let message = finished(&control, &session_id, &message_id).await;
        assert_eq!(message["status"], "completed", "{message}");
        assert_eq!(part_types(&message), ["tool_call", "tool_result", "tool_call", "tool_result", "text"], "{message}");
        let parts = &message["output"]["parts"];
        assert_eq!(parts[0]["name"], "write");
        assert_eq!(parts[1]["is_error"], false, "{message}");
        assert!(parts[3]["content"][0]["text"].as_str().expect("read's text").contains("hello from pi"), "{message}");
        assert_eq!(parts[4]["text"], "notes/hello.txt says: hello from pi");
        assert_eq!(message["output"]["usage"]["input_tokens"], 300, "three calls of 100 input tokens: {message}");
        assert_eq!(message["output"]["usage"]["output_tokens"], 60);

        // What the model was sent: the instructions and tools, the key, the results in turn.
        let requests = fake.requests();
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {PLATFORM_KEY}").as_str()));
        assert_eq!(requests[0].model(), Some("gpt-test"), "the provider prefix is not sent to OpenAI");
        let system = requests[0].system_prompt().expect("a system prompt");
        assert!(system.starts_with(INSTRUCTIONS), "{system}");
        assert!(system.contains("Current working directory: /workspace"), "{system}");
        assert_eq!(requests[0].tool_names(), ["read", "bash", "edit", "write"], "the default tools");
        assert!(requests[2].tool_result_texts().last().expect("read's result").contains("hello from pi"));

        // The ledger and the transcript show every step.
        let events = events(&control, &session_id).await;
        assert_eq!(of_type(&events, "assistant.step_completed").len(), 3);
        assert_eq!(of_type(&events, "tool.call_started").len(), 2);
        let completed = of_type(&events, "tool.call_completed");
        assert_eq!(completed.len(), 2);
        assert_eq!(completed[0]["data"]["tool_name"], "write");
        assert_eq!(completed[1]["data"]["tool_call_id"], "call_read");
        assert_eq!(of_type(&events, "assistant.message_completed").len(), 1);
        let (status, transcript) = control.get(&format!("/v1/sessions/{session_id}/transcript")).await;
        assert_eq!(status, StatusCode::OK, "{transcript}");
        let items = transcript["timeline"]["items"].as_array().expect("items");
        let kinds: Vec<&str> = items.iter().map(|item| item["type"].as_str().unwrap_or("")).collect();
        assert_eq!(kinds, ["user_message", "tool_call", "tool_call", "assistant_message"], "{transcript}");
        assert_eq!(items[1]["tool_name"], "write");
        assert_eq!(items[1]["status"], "completed");
        assert_eq!(items[2]["status"], "completed");
        assert_eq!(items[3]["content"][0]["text"], "notes/hello.txt says: hello from pi");

        // The file is in the workspace, as the zip has it now.
        let zip = workspace_zip(&control, &session_id).await;
        assert_eq!(file(&zip, "notes/hello.txt"), Some("hello from pi\n"));

        // The platform key went to the provider only.
        let ledger = serde_json::to_string(&events).expect("events as JSON");
        assert!(!ledger.contains(PLATFORM_KEY), "the key is in the ledger");
        assert!(!control.log().contains(PLATFORM_KEY), "the key is in the server's log");
    }
}

#[tokio::test]
async fn bad_arguments_unknown_tools_and_tool_errors_are_results_the_model_reads() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let agent = deploy(&control, &manifest("built_in_tools: [read, bash, ls]\n"), &[]).await;
    let session_id = new_session(&control, &agent).await;
    fake.push(Reply::tool_calls([
        // Coerced: "2" is an integer for ls's limit.
        ScriptedToolCall::new("call_ls", "ls", &json!({"path": ".", "limit": "2"})),
        ScriptedToolCall::new("call_read", "read", &json!({"offset": 1})),
        ScriptedToolCall::new("call_nope", "write", &json!({"path": "x", "content": "y"})),
        ScriptedToolCall::raw("call_bad_json", "bash", "{\"command\": "),
        ScriptedToolCall::new("call_exit", "bash", &json!({"command": "echo out; exit 3"})),
    ]));
    fake.push(Reply::text("handled"));
    let message_id = send(&control, &session_id, "go").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "completed", "{message}");

    // The model gets the texts in call order (OpenAI's format has no error flag: the message's
    // parts carry it).
    let sent = fake.requests()[1].tool_results();
    let ids: Vec<&str> = sent.iter().map(|result| result.tool_call_id.as_str()).collect();
    assert_eq!(ids, ["call_ls", "call_read", "call_nope", "call_bad_json", "call_exit"], "results in call order");
    let results: Vec<(bool, &str)> = message["output"]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter(|part| part["type"] == "tool_result")
        .map(|part| (part["is_error"] == true, part["content"][0]["text"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(results.len(), 5, "{message}");
    assert!(!results[0].0, "{:?}", results[0]);
    assert!(results[1].0 && results[1].1.contains("Validation failed for tool \"read\""), "{:?}", results[1]);
    assert!(results[1].1.contains("path"), "names the missing field: {:?}", results[1]);
    assert!(results[2].0 && results[2].1.contains("Tool write not found"), "{:?}", results[2]);
    assert!(results[3].0 && results[3].1.contains("not valid JSON"), "{:?}", results[3]);
    assert!(results[4].0 && results[4].1.contains("out"), "the output of a failed command: {:?}", results[4]);
    assert_eq!(sent[1].text, results[1].1, "the model reads what the message records");
    assert_eq!(fake.requests()[0].tool_names(), ["read", "bash", "ls"]);
}

#[tokio::test]
async fn a_model_that_never_stops_calling_tools_is_stopped_at_the_turn_limit() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).args(["--pi-max-model-turns", "3"]).start().await;
    let agent = deploy(&control, &manifest(""), &[]).await;
    let session_id = new_session(&control, &agent).await;
    fake.set_fallback(Reply::tool_calls([ScriptedToolCall::new("call_again", "bash", &json!({"command": "true"}))]));
    let message_id = send(&control, &session_id, "loop forever").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "failed", "{message}");
    assert_eq!(message["output"]["error"]["type"], "turn_limit", "{message}");
    assert_eq!(fake.requests().len(), 3);
    // The repeated id got a new one each time: the ledger indexes calls by id.
    let events = events(&control, &session_id).await;
    let ids: Vec<&str> = of_type(&events, "tool.call_started")
        .iter()
        .map(|event| event["data"]["tool_call_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids[0] == "call_again" && ids[1] != ids[0] && ids[2] != ids[1], "{ids:?}");
}

#[tokio::test]
async fn skills_are_offered_by_description_and_a_slash_command_expands_one() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let skills = "skills:\n  - name: release-notes\n    path: skills/release-notes\n  - name: secret-handshake\n    path: skills/secret-handshake\n";
    let files = [
        (
            "skills/release-notes/SKILL.md",
            "---\nname: release-notes\ndescription: Write release notes from the git log.\n---\nRun git log and group the changes.\n",
        ),
        (
            "skills/secret-handshake/SKILL.md",
            "---\nname: secret-handshake\ndescription: Only for people.\ndisable-model-invocation: true\n---\nWave twice, then nod.\n",
        ),
    ];
    let agent = deploy(&control, &manifest(skills), &files).await;
    let session_id = new_session(&control, &agent).await;
    fake.push(Reply::text("first"));
    fake.push(Reply::text("second"));

    let first = send(&control, &session_id, "hello").await;
    assert_eq!(finished(&control, &session_id, &first).await["status"], "completed");
    let system = fake.requests()[0].system_prompt().expect("a system prompt");
    assert!(system.contains("<name>release-notes</name>"), "{system}");
    assert!(system.contains("<description>Write release notes from the git log.</description>"), "{system}");
    assert!(
        system.contains("/workspace/.dari/agent-resources/source-bundle/skills/release-notes/SKILL.md"),
        "the model reads the skill from the bundle: {system}"
    );
    assert!(!system.contains("secret-handshake"), "a skill hidden from the model is not offered: {system}");

    let second = send(&control, &session_id, "/skill:secret-handshake for the new hire").await;
    assert_eq!(finished(&control, &session_id, &second).await["status"], "completed");
    let sent = fake.requests()[1].last_user_text().expect("the user's message");
    assert!(sent.starts_with("<skill name=\"secret-handshake\""), "{sent}");
    assert!(sent.contains("Wave twice, then nod.") && !sent.contains("disable-model-invocation"), "{sent}");
    assert!(sent.ends_with("for the new hire"), "{sent}");

    let unknown = send(&control, &session_id, "/skill:nope").await;
    let unknown = finished(&control, &session_id, &unknown).await;
    assert_eq!(unknown["status"], "failed");
    assert_eq!(unknown["output"]["error"]["type"], "unknown_skill", "{unknown}");
    assert!(unknown["output"]["error"]["message"].as_str().expect("a message").contains("release-notes"), "{unknown}");
}

#[tokio::test]
async fn the_stream_carries_the_text_as_the_model_writes_it() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let agent = deploy(&control, &manifest(""), &[]).await;
    let session_id = new_session(&control, &agent).await;
    let response = control
        .request(Method::GET, &format!("/v1/sessions/{session_id}/stream"))
        .send()
        .await
        .expect("open the stream");
    let mut stream = SseReader::new(response);
    let text = "Streaming answers arrive piece by piece for live views.";
    fake.push(Reply::text(text));
    let message_id = send(&control, &session_id, "say something").await;
    let mut deltas = String::new();
    let mut delta_events = 0;
    while let Some(event) = stream.next_event().await {
        let data: Value = event.json();
        match event.event.as_deref() {
            Some("assistant.text_delta") => {
                assert!(event.id.is_none(), "a live event has no id to resume from");
                assert_eq!(data["data"]["message_id"], message_id.as_str());
                deltas.push_str(data["data"]["delta"].as_str().expect("a delta"));
                delta_events += 1;
            }
            Some("assistant.message_completed") => break,
            _ => {}
        }
    }
    assert!(delta_events > 1, "the text came in pieces");
    assert_eq!(deltas, text);
}

#[tokio::test]
async fn tool_calls_of_one_answer_run_at_once_and_report_in_call_order() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let agent = deploy(&control, &manifest(""), &[]).await;
    let session_id = new_session(&control, &agent).await;
    // Each command waits for the other's file: run one after the other, both would time out.
    let waits_for = |mine: &str, theirs: &str| json!({"command": format!("touch {mine}; for i in $(seq 200); do [ -e {theirs} ] && echo saw {theirs} && exit 0; sleep 0.05; done; exit 1"), "timeout": 30});
    fake.push(Reply::tool_calls([
        ScriptedToolCall::new("call_a", "bash", &waits_for("a.flag", "b.flag")),
        ScriptedToolCall::new("call_b", "bash", &waits_for("b.flag", "a.flag")),
    ]));
    fake.push(Reply::text("both ran"));
    let message_id = send(&control, &session_id, "run both").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "completed", "{message}");
    let results = fake.requests()[1].tool_results();
    let seen: Vec<(&str, &str)> =
        results.iter().map(|result| (result.tool_call_id.as_str(), result.text.trim())).collect();
    assert_eq!(seen, [("call_a", "saw b.flag"), ("call_b", "saw a.flag")], "{message}");
}
