//! The link between control and the real `sandboxd`, driven by a fake control over a real
//! WebSocket: identity, requests, exactly-once results across dropped connections, replay,
//! cancellation, refusal and graceful shutdown.

use dari_protocol::link::{ControlFrame, DaemonFrame, DaemonMessage, Operation, Outcome, error_code};
use dari_protocol::tools::ToolResult;
use dari_tests::fake_control::{FakeControl, SANDBOX_ID};
use serde_json::json;

fn bash(command: &str) -> Operation {
    Operation::ToolRun { name: "bash".to_owned(), arguments: json!({ "command": command }) }
}

fn tool_result(outcome: &Outcome) -> ToolResult {
    outcome.tool_result().unwrap_or_else(|| panic!("expected a tool result, got {outcome:?}"))
}

fn error_code_of(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Error { error } => &error.code,
        Outcome::Ok { value } => panic!("expected an error, got {value}"),
    }
}

/// Waits until the request streams output, which proves the daemon is running it.
async fn wait_for_output(link: &mut dari_tests::fake_control::Link, id: &str) {
    loop {
        if let (_, DaemonMessage::Chunk { request_id, .. }) = link.next_message().await
            && request_id == id
        {
            return;
        }
    }
}

#[tokio::test]
async fn hello_names_the_sandbox_and_its_capabilities() {
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let mut daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    let hello = link.hello.clone().expect("hello");
    assert_eq!(hello.sandbox_id, SANDBOX_ID);
    assert_eq!(hello.protocol, 1);
    assert!(hello.boot_id.starts_with("boot_"));
    assert!(hello.capabilities.iter().any(|capability| capability == "tool.run"));
    link.welcome(0).await;
    let (outcome, _) = link.request("r1", Operation::ToolRun { name: "nope".to_owned(), arguments: json!({}) }).await;
    let result = tool_result(&outcome);
    assert!(result.is_error && result.joined_text().contains("unknown tool \"nope\""));
    assert_eq!(daemon.terminate().await, Some(0));
    assert_eq!(daemon.unexpected_warnings(&[]), Vec::<String>::new());
}

#[tokio::test]
async fn unknown_operations_get_an_error_not_a_crash() {
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let _daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    link.welcome(0).await;
    link.send(
        &serde_json::from_value(json!({"type": "request", "id": "r1", "op": {"op": "fs.teleport"}})).expect("frame"),
    )
    .await;
    let (outcome, _) = link.result("r1").await;
    assert_eq!(error_code_of(&outcome), error_code::UNSUPPORTED_OPERATION);
}

#[tokio::test]
async fn a_repeated_request_is_answered_from_the_record() {
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let _daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    link.welcome(0).await;
    let (first, _) = link.request("r1", bash("echo ran >> counter; echo hello")).await;
    let (second, _) = link.request("r1", bash("echo ran >> counter; echo hello")).await;
    assert_eq!(first, second);
    assert_eq!(tool_result(&first).joined_text(), "hello\n");
    assert_eq!(std::fs::read_to_string(workspace.path().join("counter")).expect("counter"), "ran\n", "ran once");
}

#[tokio::test]
async fn a_link_dropped_mid_call_delivers_the_result_once_and_runs_the_command_once() {
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let _daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    link.welcome(0).await;
    let command = "echo started >> counter; sleep 0.5; echo finished >> counter; echo done";
    link.send(&ControlFrame::Request { id: "r1".to_owned(), op: bash(command) }).await;
    let acked = link.acked;
    link.sever();

    // Control does not know whether the request arrived, so it sends it again.
    let mut link = control.accept().await;
    link.welcome(acked).await;
    link.send(&ControlFrame::Request { id: "r1".to_owned(), op: bash(command) }).await;
    let (outcome, _) = link.result("r1").await;
    assert_eq!(tool_result(&outcome).joined_text(), "done\n");

    // A later request's result comes next: no second result for r1 in between.
    link.send(&ControlFrame::Request { id: "r2".to_owned(), op: bash("echo second") }).await;
    loop {
        match link.next_message().await.1 {
            DaemonMessage::Result { request_id, .. } if request_id == "r2" => break,
            DaemonMessage::Result { request_id, .. } => panic!("unexpected second result for {request_id}"),
            _ => {}
        }
    }
    let counter = std::fs::read_to_string(workspace.path().join("counter")).expect("counter");
    assert_eq!(counter, "started\nfinished\n", "the command ran exactly once");
}

#[tokio::test]
async fn unacknowledged_messages_are_replayed_after_a_reconnect() {
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let _daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    link.welcome(0).await;
    link.send(&ControlFrame::Request { id: "r1".to_owned(), op: bash("echo replayed") }).await;
    // Read the result but never acknowledge it, then lose the link.
    let first = loop {
        if let DaemonFrame::Outbox { seq, message: DaemonMessage::Result { outcome, .. } } = link.recv().await {
            break (seq, outcome);
        }
    };
    link.sever();

    let mut link = control.accept().await;
    assert_ne!(link.hello.as_ref().map(|hello| hello.boot_id.clone()), None);
    link.welcome(0).await;
    let replayed = loop {
        if let DaemonFrame::Outbox { seq, message: DaemonMessage::Result { outcome, .. } } = link.recv().await {
            break (seq, outcome);
        }
    };
    assert_eq!(replayed, first, "the same message, with the same sequence number");
}

#[tokio::test]
async fn work_finished_while_disconnected_is_delivered_on_reconnect() {
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let _daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    link.welcome(0).await;
    link.send(&ControlFrame::Request { id: "r1".to_owned(), op: bash("echo started; sleep 0.5; echo later") }).await;
    // Once output streams, the daemon surely has the request; then the link is lost.
    wait_for_output(&mut link, "r1").await;
    let acked = link.acked;
    link.sever();
    let mut link = control.accept().await;
    link.welcome(acked).await;
    let (outcome, _) = link.result("r1").await;
    assert_eq!(tool_result(&outcome).joined_text(), "started\nlater\n");
}

#[tokio::test]
async fn a_cancelled_request_reports_cancellation() {
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let _daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    link.welcome(0).await;
    link.send(&ControlFrame::Request { id: "r1".to_owned(), op: bash("sleep 30") }).await;
    link.send(&ControlFrame::Cancel { id: "r1".to_owned() }).await;
    let (outcome, _) = link.result("r1").await;
    assert_eq!(error_code_of(&outcome), error_code::CANCELLED);
}

#[tokio::test]
async fn a_refused_token_stops_the_daemon_with_exit_code_3() {
    let workspace = tempfile::tempdir().expect("workspace");
    let control = FakeControl::start().await;
    let mut daemon = control.spawn_daemon_with(workspace.path(), "tok_wrong");
    assert_eq!(daemon.wait().await, Some(3));
}

#[tokio::test]
async fn sigterm_lets_running_work_finish_and_flushes_its_result() {
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let mut daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    link.welcome(0).await;
    link.send(&ControlFrame::Request { id: "r1".to_owned(), op: bash("echo started; sleep 0.3; echo finished") }).await;
    wait_for_output(&mut link, "r1").await;
    let pid = daemon.child.id().expect("running");
    #[allow(clippy::disallowed_methods)] // Signal the daemon as a provider would.
    let status = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("kill");
    assert!(status.success());
    let (outcome, _) = link.result("r1").await;
    assert_eq!(tool_result(&outcome).joined_text(), "started\nfinished\n");
    assert_eq!(daemon.wait().await, Some(0));
}

#[tokio::test]
async fn control_shutdown_cancels_work_past_the_grace_period() {
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let mut daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    link.welcome(0).await;
    link.send(&ControlFrame::Request { id: "r1".to_owned(), op: bash("sleep 60") }).await;
    link.send(&ControlFrame::Shutdown { grace_ms: 200 }).await;
    let (outcome, _) = link.result("r1").await;
    assert_eq!(error_code_of(&outcome), error_code::CANCELLED);
    assert_eq!(daemon.wait().await, Some(0));
}
