//! Messages that run: the real `dari server` with workers, local sandboxes running the real
//! `sandboxd`, and custom runtime servers in Python. Progress is awaited on the session's event
//! stream, never slept for.

use std::path::PathBuf;

use dari_tests::control::{ControlServer, DeployedAgent, Engine, deploy_echo_agent, deploy_project};
use dari_tests::sse::SseReader;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The test runtime (`tests/fixtures/test-runtime`): its behaviour follows the message's text.
async fn deploy_test_runtime(control: &ControlServer) -> DeployedAgent {
    deploy_project(control, &dari_tests::workspace_root().join("tests/fixtures/test-runtime")).await
}

pub(crate) async fn new_session(control: &ControlServer, agent: &DeployedAgent) -> String {
    let (status, session) = control.post(&format!("/v1/agents/{}/sessions", agent.agent_id), &json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    session["id"].as_str().expect("a session id").to_owned()
}

/// Sends a text message and returns its id.
pub(crate) async fn send(control: &ControlServer, session_id: &str, text: &str) -> String {
    let body = json!({"type": "user.message", "content": [{"type": "text", "text": text}]});
    let (status, accepted) = control.post(&format!("/v1/sessions/{session_id}/events"), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    accepted["message"]["id"].as_str().expect("a message id").to_owned()
}

/// Follows the session's stream from the start until an event passes `wanted`, and returns it.
pub(crate) async fn wait_for_event(
    control: &ControlServer,
    session_id: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let response = control
        .request(Method::GET, &format!("/v1/sessions/{session_id}/stream"))
        .send()
        .await
        .expect("open the stream");
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = SseReader::new(response);
    while let Some(message) = stream.next_event().await {
        let event = message.json();
        if wanted(&event) {
            return event;
        }
    }
    panic!("the stream of {session_id} ended before the awaited event; server log:\n{}", control.log());
}

/// Waits until the message has ended and returns it.
pub(crate) async fn finished(control: &ControlServer, session_id: &str, message_id: &str) -> Value {
    wait_for_event(control, session_id, |event| {
        event["type"] == "message.status_changed"
            && event["data"]["message_id"] == message_id
            && matches!(event["data"]["status"].as_str(), Some("completed" | "failed"))
    })
    .await;
    let (status, message) = control.get(&format!("/v1/messages/{message_id}")).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    message
}

fn reply(message: &Value) -> &str {
    assert_eq!(message["status"], "completed", "{message}");
    message["output"]["parts"][0]["text"].as_str().expect("a text part")
}

/// The session's workspace directory under the local provider.
fn workspace(control: &ControlServer, session_id: &str) -> PathBuf {
    control.data_dir.path().join("sandboxes/sessions").join(session_id).join("workspace")
}

async fn event_types(control: &ControlServer, session_id: &str) -> Vec<String> {
    let (status, page) = control.get(&format!("/v1/sessions/{session_id}/events?limit=500")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn the_echo_runtime_answers_and_keeps_its_state_between_messages() {
    for engine in Engine::available() {
        let control = ControlServer::builder(engine).workers(8).start().await;
        let agent = deploy_echo_agent(&control).await;
        let session_id = new_session(&control, &agent).await;

        let first = send(&control, &session_id, "Remember this value: abc123.").await;
        let first = finished(&control, &session_id, &first).await;
        assert_eq!(reply(&first), "echo: Remember this value: abc123. (turn 1)");
        assert_eq!(first["attempt"], 1);
        assert!(first["started_at"].is_string() && first["completed_at"].is_string(), "{first}");

        let second = send(&control, &session_id, "What was it?").await;
        let second = finished(&control, &session_id, &second).await;
        assert_eq!(reply(&second), "echo: What was it? (turn 2)", "the second turn sees the first's state");

        let types = event_types(&control, &session_id).await;
        let expected_first_turn = [
            "user.message",
            "message.status_changed",
            "session.status_changed",
            "message.status_changed",
            "sandbox.status_changed",
            "assistant.message_completed",
            "message.status_changed",
            "session.status_changed",
        ];
        assert_eq!(&types[..expected_first_turn.len()], expected_first_turn, "{types:?}");
        let (_, session) = control.get(&format!("/v1/sessions/{session_id}")).await;
        assert_eq!(session["status"], "idle", "{session}");
        assert_eq!(session["last_message_status"], "completed");

        // The transcript shows the assistant's answers.
        let (_, transcript) = control.get(&format!("/v1/sessions/{session_id}/transcript")).await;
        let text = transcript.to_string();
        assert!(text.contains("echo: What was it? (turn 2)"), "{transcript}");
    }
}

#[tokio::test]
async fn a_failing_runtime_fails_the_message_with_the_reason_and_the_session_goes_on() {
    let control = ControlServer::builder(Engine::Sqlite).workers(4).start().await;
    let agent = deploy_test_runtime(&control).await;
    let session_id = new_session(&control, &agent).await;

    let failed = send(&control, &session_id, "fail").await;
    let failed = finished(&control, &session_id, &failed).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = &failed["output"]["error"];
    assert_eq!(error["type"], "runtime_http_error", "{error}");
    assert!(error["message"].as_str().expect("message").contains("HTTP 500"), "{error}");
    assert!(error["details"]["body_excerpt"].as_str().expect("excerpt").contains("boom"), "{error}");
    let logs = error["details"]["recent_logs"].to_string();
    assert!(logs.contains("the database is on fire"), "the runtime's last log lines: {error}");

    let bad = send(&control, &session_id, "bad").await;
    let bad = finished(&control, &session_id, &bad).await;
    assert_eq!(bad["output"]["error"]["type"], "runtime_bad_response", "{bad}");
    assert!(bad["output"]["error"]["message"].as_str().expect("message").contains("an array"), "{bad}");

    let crashed = send(&control, &session_id, "crash").await;
    let crashed = finished(&control, &session_id, &crashed).await;
    assert_eq!(crashed["output"]["error"]["type"], "runtime_crashed", "{crashed}");
    assert!(crashed["output"]["error"]["details"]["recent_logs"].to_string().contains("crashing now"), "{crashed}");

    // The session is still usable; the failed turns kept the state they had.
    let fine = send(&control, &session_id, "env").await;
    let fine = finished(&control, &session_id, &fine).await;
    assert_eq!(reply(&fine), "hello from sandbox.env", "sandbox.env reaches the runtime");
    let counted = send(&control, &session_id, "count").await;
    assert_eq!(reply(&finished(&control, &session_id, &counted).await), "echo: count (turn 1)");
}

#[tokio::test]
async fn runtime_events_are_namespaced_and_complete_session_ends_the_session() {
    let control = ControlServer::builder(Engine::Sqlite).workers(4).start().await;
    let agent = deploy_test_runtime(&control).await;
    let session_id = new_session(&control, &agent).await;
    let message = send(&control, &session_id, "events 1000").await;
    // Accepted while the session was still running: it fails once the agent has ended the session.
    let late = send(&control, &session_id, "too late").await;
    assert_eq!(reply(&finished(&control, &session_id, &message).await), "bye");
    let late = finished(&control, &session_id, &late).await;
    assert_eq!(late["output"]["error"]["type"], "session_completed", "{late}");
    let types = event_types(&control, &session_id).await;
    let note = types.iter().position(|kind| kind == "runtime.note").expect("runtime.note recorded");
    assert_eq!(types[note + 1], "runtime.progress.done");
    let completed = types.iter().position(|kind| kind == "assistant.message_completed").expect("completed");
    assert!(note < completed, "runtime events come before the answer: {types:?}");
    let (_, session) = control.get(&format!("/v1/sessions/{session_id}")).await;
    assert_eq!(session["status"], "completed", "{session}");
    let body = json!({"type": "user.message", "content": [{"type": "text", "text": "more"}]});
    let (status, refused) = control.post(&format!("/v1/sessions/{session_id}/events"), &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused["detail"].as_str().expect("detail").contains("completed"), "{refused}");
}

#[tokio::test]
async fn messages_sent_while_one_runs_wait_their_turn_in_order() {
    let control = ControlServer::builder(Engine::Sqlite).workers(8).start().await;
    let agent = deploy_test_runtime(&control).await;
    let session_id = new_session(&control, &agent).await;
    let slow = send(&control, &session_id, "slow").await;
    let queued: Vec<String> = futures_util::future::join_all((1..=3).map(|n| {
        let control = &control;
        let session_id = &session_id;
        async move { send(control, session_id, &format!("next {n}")).await }
    }))
    .await;
    wait_for_event(&control, &session_id, |event| {
        event["type"] == "message.status_changed"
            && event["data"]["message_id"] == slow.as_str()
            && event["data"]["status"] == "running"
    })
    .await;
    // The later messages stay queued while the slow one runs.
    for message_id in &queued {
        let (_, message) = control.get(&format!("/v1/messages/{message_id}")).await;
        assert_eq!(message["status"], "queued", "{message}");
    }
    std::fs::write(workspace(&control, &session_id).join("slow-release"), b"").expect("release the slow turn");
    assert_eq!(reply(&finished(&control, &session_id, &slow).await), "slow done (turn 1)");
    let mut turns = Vec::new();
    for message_id in &queued {
        let message = finished(&control, &session_id, message_id).await;
        turns.push(reply(&message).to_owned());
    }
    // Each ran after the one before it, seeing its state: sent concurrently, their order is the
    // order the server accepted them in.
    let mut numbers: Vec<&str> = turns.iter().map(|text| text.rsplit("(turn ").next().unwrap_or("")).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, ["2)", "3)", "4)"], "{turns:?}");
}

#[tokio::test]
async fn the_idle_timeout_tears_the_sandbox_down_and_the_next_message_restores_it() {
    let control =
        ControlServer::builder(Engine::Sqlite).workers(4).args(["--sandbox-idle-timeout", "1s"]).start().await;
    let agent = deploy_test_runtime(&control).await;
    let session_id = new_session(&control, &agent).await;
    let wrote = send(&control, &session_id, "write memo.txt the answer is 42").await;
    assert_eq!(reply(&finished(&control, &session_id, &wrote).await), "wrote memo.txt");

    let terminated = wait_for_event(&control, &session_id, |event| {
        event["type"] == "sandbox.status_changed" && event["data"]["status"] == "terminated"
    })
    .await;
    assert_eq!(terminated["data"]["reason"], "idle", "{terminated}");
    assert!(!workspace(&control, &session_id).exists(), "the idle sandbox's workspace was archived and removed");
    let (status, _) =
        control.send(control.request(Method::GET, &format!("/v1/sessions/{session_id}/workspace.zip"))).await;
    assert_eq!(status, StatusCode::OK, "the archive is downloadable");

    let read = send(&control, &session_id, "read memo.txt").await;
    assert_eq!(
        reply(&finished(&control, &session_id, &read).await),
        "the answer is 42 (turn 2)",
        "a new sandbox, with the workspace restored from its archive and the state from the database"
    );
    let (_, page) = control.get(&format!("/v1/sessions/{session_id}/events?limit=500")).await;
    let ready: Vec<&Value> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["type"] == "sandbox.status_changed" && event["data"]["status"] == "ready")
        .collect();
    assert_eq!(ready.len(), 2, "two sandboxes: {ready:?}");
    assert_ne!(ready[0]["data"]["sandbox_id"], ready[1]["data"]["sandbox_id"]);
}

#[tokio::test]
async fn a_sandbox_killed_mid_turn_is_replaced_and_the_turn_runs_again() {
    let control = ControlServer::builder(Engine::Sqlite).workers(4).start().await;
    let agent = deploy_test_runtime(&control).await;
    let session_id = new_session(&control, &agent).await;
    let warm = send(&control, &session_id, "hello").await;
    assert_eq!(reply(&finished(&control, &session_id, &warm).await), "echo: hello (turn 1)");

    let slow = send(&control, &session_id, "slow").await;
    let ready = wait_for_event(&control, &session_id, |event| {
        event["type"] == "sandbox.status_changed" && event["data"]["status"] == "ready"
    })
    .await;
    let sandbox_id = ready["data"]["sandbox_id"].as_str().expect("a sandbox id").to_owned();
    let started = workspace(&control, &session_id).join("slow-started");
    wait_until_exists(&started).await;
    let killed = kill_daemon(&sandbox_id);
    assert!(killed, "found and killed the daemon of {sandbox_id}");
    // The next attempt runs in a new sandbox; let it finish.
    std::fs::write(workspace(&control, &session_id).join("slow-release"), b"").expect("release the slow turn");
    let message = finished(&control, &session_id, &slow).await;
    assert_eq!(reply(&message), "slow done (turn 2)", "{message}");
    assert_eq!(message["attempt"], 2, "the lost sandbox cost one attempt");
    let lost = wait_for_event(&control, &session_id, |event| {
        event["type"] == "sandbox.status_changed"
            && event["data"]["status"] == "terminated"
            && event["data"]["sandbox_id"] == sandbox_id.as_str()
    })
    .await;
    assert!(lost["data"]["reason"].as_str().expect("reason").starts_with("lost"), "{lost}");
}

/// Waits for a file the runtime creates; the runtime runs in another process and tells us
/// nothing else, so this polls.
async fn wait_until_exists(path: &std::path::Path) {
    for _ in 0..600 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{} never appeared", path.display());
}

/// SIGKILLs the `sandboxd` whose environment names `sandbox_id`.
fn kill_daemon(sandbox_id: &str) -> bool {
    let wanted = format!("SANDBOXD_SANDBOX_ID={sandbox_id}");
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|byte| *byte == 0).any(|item| item == wanted.as_bytes()) {
            let pid = entry.file_name().to_string_lossy().into_owned();
            #[allow(clippy::disallowed_methods)] // A signal for the daemon under test.
            let status = std::process::Command::new("kill").args(["-KILL", &pid]).status();
            return status.is_ok_and(|status| status.success());
        }
    }
    false
}

#[tokio::test]
async fn dari_session_send_prints_the_reply_and_events_show_the_ledger() {
    let control = ControlServer::builder(Engine::Sqlite).workers(4).start().await;
    deploy_echo_agent(&control).await;
    let env = control.cli_env();
    let run = |args: Vec<String>| {
        let env = env.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            dari_tests::binaries::dari_with_env(&args, &env)
        })
    };
    let args = |list: &[&str]| list.iter().map(|arg| (*arg).to_owned()).collect::<Vec<_>>();
    let first =
        run(args(&["session", "send", "--agent", "echo-runtime", "--name", "cli", "hi there"])).await.expect("run");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&first.stdout), "echo: hi there (turn 1)\n");
    assert!(stderr.contains("session sess_"), "the session is named for the next send: {stderr}");

    let second = run(args(&["session", "send", "cli", "again", "--json"])).await.expect("run");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let message: Value = serde_json::from_slice(&second.stdout).expect("the message as JSON");
    assert_eq!(message["status"], "completed");
    assert_eq!(message["output"]["parts"][0]["text"], "echo: again (turn 2)");

    let events = run(args(&["session", "events", "cli"])).await.expect("run");
    assert!(events.status.success(), "{}", String::from_utf8_lossy(&events.stderr));
    let events: Value = serde_json::from_slice(&events.stdout).expect("events as JSON");
    let completed = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["type"] == "assistant.message_completed")
        .count();
    assert_eq!(completed, 2, "{events}");
}

#[tokio::test]
async fn dari_session_send_exits_non_zero_when_the_message_fails() {
    let control = ControlServer::builder(Engine::Sqlite).workers(4).start().await;
    deploy_test_runtime(&control).await;
    let env = control.cli_env();
    let output = tokio::task::spawn_blocking(move || {
        dari_tests::binaries::dari_with_env(&["session", "send", "--agent", "test-runtime", "fail"], &env)
    })
    .await
    .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("failed: runtime_http_error"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn a_runtime_that_never_gets_healthy_or_answers_too_late_fails_the_message_with_its_logs() {
    let control = ControlServer::builder(Engine::Sqlite)
        .workers(4)
        .args(["--runtime-start-timeout", "5s", "--runtime-advance-timeout", "1s"])
        .start()
        .await;

    // A server that starts, says so, and never answers its health check.
    let project = tempfile::tempdir().expect("a project directory");
    dari_tests::write_tree(
        project.path(),
        [
            (
                "dari.yml",
                b"name: sleepy\nharness:\n  kind: customRuntimeServer\n  protocol: dari-runtime-v1\n  customRuntimeServer:\n    command: python3 server.py\n    port: 8790\ninstructions:\n  system: prompts/system.md\nbuilt_in_tools: []\n"
                    .as_slice(),
            ),
            ("prompts/system.md", b"Sleep.".as_slice()),
            ("server.py", b"import time\nprint('warming up the flux capacitor', flush=True)\ntime.sleep(600)\n".as_slice()),
        ],
    );
    let sleepy = deploy_project(&control, project.path()).await;
    let session_id = new_session(&control, &sleepy).await;
    let message = send(&control, &session_id, "hello?").await;
    let message = finished(&control, &session_id, &message).await;
    let error = &message["output"]["error"];
    assert_eq!(error["type"], "runtime_unhealthy", "{message}");
    assert!(error["details"]["recent_logs"].to_string().contains("warming up the flux capacitor"), "{error}");

    // A server that answers after the advance timeout.
    let agent = deploy_test_runtime(&control).await;
    let session_id = new_session(&control, &agent).await;
    let late = send(&control, &session_id, "nap 3000").await;
    let late = finished(&control, &session_id, &late).await;
    assert_eq!(late["output"]["error"]["type"], "runtime_timeout", "{late}");
    let next = send(&control, &session_id, "still there?").await;
    assert_eq!(reply(&finished(&control, &session_id, &next).await), "echo: still there? (turn 1)");
}

#[tokio::test]
async fn a_prewarmed_session_has_its_sandbox_before_its_first_message() {
    let control = ControlServer::builder(Engine::Sqlite).workers(4).args(["--prewarm-sandboxes"]).start().await;
    let agent = deploy_echo_agent(&control).await;
    let session_id = new_session(&control, &agent).await;
    let ready = wait_for_event(&control, &session_id, |event| event["type"] == "sandbox.status_changed").await;
    assert_eq!(ready["data"]["status"], "ready", "{ready}");
    assert_eq!(ready["sequence_number"], 1, "the sandbox came up before any message: {ready}");
    let message = send(&control, &session_id, "warm?").await;
    assert_eq!(reply(&finished(&control, &session_id, &message).await), "echo: warm? (turn 1)");
    let types = event_types(&control, &session_id).await;
    assert_eq!(types.iter().filter(|kind| *kind == "sandbox.status_changed").count(), 1, "one sandbox: {types:?}");
}
