//! `examples/pi-agent` as shipped, against the fake: the model writes a file, measures it with
//! the Python `word_count` tool (`kind: main`, run by sandboxd from the bundle), and answers; a
//! main tool that keeps failing is tried `retries` more times before the model reads the error.

use dari_tests::control::{Engine, deploy_project};
use dari_tests::fake_llm::{FakeLlm, Reply, ScriptedToolCall};
use serde_json::json;

use super::{events, of_type, server};
use crate::execution::{finished, new_session, send};

#[tokio::test]
async fn the_example_agent_runs_its_python_tool_and_retries_it_when_it_fails() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let agent = deploy_project(&control, &dari_tests::workspace_root().join("examples/pi-agent")).await;
    let session_id = new_session(&control, &agent).await;
    fake.push(Reply::tool_calls([ScriptedToolCall::new(
        "call_write",
        "write",
        &json!({"path": "notes.txt", "content": "one two three\nfour\n"}),
    )]));
    fake.push(Reply::tool_calls([
        ScriptedToolCall::new("call_count", "word_count", &json!({"path": "notes.txt"})),
        ScriptedToolCall::new("call_missing", "word_count", &json!({"path": "missing.txt"})),
    ]));
    fake.push(Reply::text("notes.txt has 4 words."));

    let message_id = send(&control, &session_id, "Write notes.txt and count its words.").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "completed", "{message}");

    let first = fake.requests()[0].clone();
    let tools = first.tool_names();
    assert_eq!(
        tools,
        ["read", "bash", "edit", "write", "grep", "find", "ls", "word_count", "request_approval", "repo_search"],
        "the built-in set of dari.yml, then its custom tools"
    );
    assert!(first.system_prompt().expect("a system prompt").contains("<name>review</name>"));

    let events = events(&control, &session_id).await;
    let completed = of_type(&events, "tool.call_completed");
    let count = completed.iter().find(|event| event["data"]["tool_call_id"] == "call_count").expect("word_count ran");
    assert_eq!(count["data"]["result"], json!({"lines": 2, "words": 4, "characters": 19}), "{count}");
    assert_eq!(count["data"]["details"]["attempts"], 1);
    let failed = of_type(&events, "tool.call_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["data"]["tool_call_id"], "call_missing");
    assert_eq!(failed[0]["data"]["details"]["attempts"], 3, "retries: 2 means three attempts: {}", failed[0]);
    let sent = fake.requests()[2].tool_results();
    let missing = sent.iter().find(|result| result.tool_call_id == "call_missing").expect("a result for each call");
    assert!(missing.text.contains("missing.txt"), "the model reads why: {missing:?}");
}
