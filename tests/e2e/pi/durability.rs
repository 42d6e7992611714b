//! Durable steps: the server is SIGKILLed in the middle of a message's loop and started again on
//! the same data; the loop resumes from its last committed step and no tool call runs twice.

use dari_tests::control::{ControlServer, Engine};
use dari_tests::fake_llm::{FakeLlm, Gate, Reply, ScriptedToolCall};
use serde_json::json;

use super::{deploy, file, manifest, server, workspace_zip};
use crate::execution::{finished, new_session, send, wait_for_event};

/// Kills the server and starts it again on the same port, data and database, with short leases
/// so that the new server takes the message over soon.
async fn kill_and_restart(control: ControlServer, fake: &FakeLlm) -> ControlServer {
    let address = control.url.trim_start_matches("http://").to_owned();
    let engine = control.engine.clone();
    let (data_dir, database_url) = control.kill().await;
    server(engine, fake).args(["--message-lease", "1s"]).listen(&address).restart(data_dir, database_url).await
}

#[tokio::test]
async fn killed_while_the_model_answers_the_loop_resumes_without_running_the_tool_again() {
    for engine in Engine::available() {
        killed_while_the_model_answers(engine).await;
    }
}

async fn killed_while_the_model_answers(engine: Engine) {
    let fake = FakeLlm::start().await;
    let control = server(engine, &fake).args(["--message-lease", "1s"]).start().await;
    let agent = deploy(&control, &manifest(""), &[]).await;
    let session_id = new_session(&control, &agent).await;
    let gate = Gate::new();
    fake.push(Reply::tool_calls([ScriptedToolCall::new(
        "call_count",
        "bash",
        &json!({"command": "echo ran >> count.txt"}),
    )]));
    fake.push(Reply::text("never delivered").gated(&gate));
    fake.push(Reply::text("done after the restart"));

    let message_id = send(&control, &session_id, "count once").await;
    wait_for_event(&control, &session_id, |event| event["type"] == "tool.call_completed").await;
    gate.wait_until_held().await;
    let control = kill_and_restart(control, &fake).await;

    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "completed", "{message}");
    assert_eq!(
        message["output"]["parts"].as_array().expect("parts").last().expect("a part")["text"],
        "done after the restart"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "the answer the kill cut off was asked for again, once");
    assert_eq!(requests[2].tool_results().len(), 1, "the resumed call carries the committed tool result");
    let zip = workspace_zip(&control, &session_id).await;
    assert_eq!(file(&zip, "count.txt"), Some("ran\n"), "the tool ran once");
}

#[tokio::test]
async fn killed_while_a_tool_runs_the_same_daemon_answers_and_the_tool_runs_once() {
    for engine in Engine::available() {
        killed_while_a_tool_runs(engine).await;
    }
}

async fn killed_while_a_tool_runs(engine: Engine) {
    let fake = FakeLlm::start().await;
    let control = server(engine, &fake).args(["--message-lease", "1s"]).start().await;
    let agent = deploy(&control, &manifest(""), &[]).await;
    let session_id = new_session(&control, &agent).await;
    let command = "echo start >> count.txt; sleep 2; echo end >> count.txt; echo finished";
    fake.push(Reply::tool_calls([ScriptedToolCall::new("call_slow", "bash", &json!({"command": command}))]));
    fake.push(Reply::text("the slow command finished"));

    let message_id = send(&control, &session_id, "run the slow command").await;
    wait_for_event(&control, &session_id, |event| event["type"] == "tool.call_started").await;
    let control = kill_and_restart(control, &fake).await;

    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "completed", "{message}");
    let results = fake.requests()[1].tool_results();
    assert_eq!(results.len(), 1);
    assert!(results[0].text.contains("finished"), "the result of the run that was under way: {:?}", results[0]);
    let zip = workspace_zip(&control, &session_id).await;
    assert_eq!(file(&zip, "count.txt"), Some("start\nend\n"), "the tool ran once");
}
