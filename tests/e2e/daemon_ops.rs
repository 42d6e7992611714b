//! Every other operation of the real daemon over the link: exec, the custom runtime server
//! (health, advance with control's headers, restart after SIGKILL, crashes and failures with their
//! logs), terminals, file watches, built-in tools given hostile arguments, and a workspace archived
//! by one daemon and restored by another.

use std::collections::BTreeMap;
use std::path::Path;

use dari_protocol::link::{
    AdvanceResponse, DaemonEvent, ExecOutcome, ExecRequest, FsWatch, Operation, Outcome, PtyOpen, RuntimeStart,
    RuntimeState, RuntimeStatus, Stream, WorkspaceArchive, WorkspaceArchived, WorkspaceRestore, WorkspaceRestored,
    error_code,
};
use dari_tests::fake_control::{FakeControl, Link, TOKEN, receive_bytes, serve_bytes};
use dari_tests::workspace_root;
use serde_json::json;

async fn connected(workspace: &Path) -> (FakeControl, dari_tests::fake_control::DaemonProcess, Link) {
    let mut control = FakeControl::start().await;
    let daemon = control.spawn_daemon(workspace);
    let mut link = control.accept().await;
    link.welcome(0).await;
    (control, daemon, link)
}

fn value<T: serde::de::DeserializeOwned>(outcome: Outcome) -> T {
    match outcome {
        Outcome::Ok { value } => serde_json::from_value(value).expect("the value's shape"),
        Outcome::Error { error } => panic!("expected success, got {}: {} {}", error.code, error.message, error.details),
    }
}

fn error(outcome: Outcome) -> dari_protocol::link::OpError {
    match outcome {
        Outcome::Error { error } => error,
        Outcome::Ok { value } => panic!("expected an error, got {value}"),
    }
}

#[tokio::test]
async fn exec_streams_stdout_and_stderr_apart_and_reports_the_exit_code() {
    let workspace = tempfile::tempdir().expect("workspace");
    let (_control, _daemon, mut link) = connected(workspace.path()).await;
    let request = ExecRequest {
        argv: Some(vec!["sh".into(), "-c".into(), "read line; echo out:$line; echo err >&2; exit 3".into()]),
        stdin: Some("typed\n".to_owned()),
        ..ExecRequest::default()
    };
    let (outcome, chunks) = link.request("e1", Operation::Exec(request)).await;
    let outcome: ExecOutcome = value(outcome);
    assert_eq!((outcome.exit_code, outcome.timed_out), (Some(3), false));
    let collect = |wanted: Stream| {
        chunks.iter().filter(|(stream, _)| *stream == wanted).map(|(_, data)| data.as_str()).collect::<String>()
    };
    assert_eq!(collect(Stream::Stdout), "out:typed\n");
    assert_eq!(collect(Stream::Stderr), "err\n");

    let request = ExecRequest { shell: Some("sleep 30".to_owned()), timeout_ms: Some(300), ..ExecRequest::default() };
    let outcome: ExecOutcome = value(link.request("e2", Operation::Exec(request)).await.0);
    assert!(outcome.timed_out);

    let request =
        ExecRequest { shell: Some("true".to_owned()), cwd: Some("../..".to_owned()), ..ExecRequest::default() };
    assert_eq!(error(link.request("e3", Operation::Exec(request)).await.0).code, error_code::BAD_REQUEST);
}

/// Copies the echo-runtime example into the workspace and returns its start request.
fn echo_runtime(workspace: &Path) -> RuntimeStart {
    let example = workspace_root().join("examples/echo-runtime");
    let target = workspace.join("echo");
    std::fs::create_dir_all(&target).expect("create the runtime directory");
    std::fs::copy(example.join("server.py"), target.join("server.py")).expect("copy the server");
    RuntimeStart {
        command: "python3 server.py".to_owned(),
        port: free_port(),
        health_path: "/health".to_owned(),
        advance_path: "/runtime/advance".to_owned(),
        cwd: Some("echo".to_owned()),
        env: BTreeMap::new(),
        start_timeout_ms: 15_000,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

fn advance_body(text: &str, state: Option<serde_json::Value>) -> serde_json::Value {
    let mut body = json!({"input": {"type": "user_message", "message": {"content": [{"type": "text", "text": text}]}}});
    if let Some(state) = state {
        body["state_ref"] = json!({ "json": state });
    }
    body
}

fn advance_op(body: serde_json::Value, timeout_ms: u64) -> Operation {
    Operation::RuntimeAdvance { body, timeout_ms, headers: BTreeMap::new() }
}

#[tokio::test]
async fn the_runtime_server_answers_advances_and_survives_sigkill() {
    let workspace = tempfile::tempdir().expect("workspace");
    let (_control, _daemon, mut link) = connected(workspace.path()).await;
    let status: RuntimeStatus =
        value(link.request("s1", Operation::RuntimeStart(echo_runtime(workspace.path()))).await.0);
    assert_eq!(status.state, RuntimeState::Healthy);

    let advance = advance_op(advance_body("hi", None), 10_000);
    let response: AdvanceResponse = value(link.request("a1", advance).await.0);
    assert_eq!(response.body["text"], "echo: hi (turn 1)");
    let advance = advance_op(advance_body("again", Some(response.body["state"].clone())), 10_000);
    let response: AdvanceResponse = value(link.request("a2", advance).await.0);
    assert_eq!(response.body["text"], "echo: again (turn 2)");

    let pid = status.pid.expect("a running server");
    nix_kill(pid);
    let exited = link.event(|event| matches!(event, DaemonEvent::RuntimeExited { .. })).await;
    assert_eq!(exited, DaemonEvent::RuntimeExited { code: None, signal: Some(9) });
    let advance = advance_op(advance_body("after", None), 15_000);
    let response: AdvanceResponse = value(link.request("a3", advance).await.0);
    assert_eq!(response.body["text"], "echo: after (turn 1)");
    let status: RuntimeStatus = value(link.request("s2", Operation::RuntimeStatus).await.0);
    assert_eq!((status.state, status.restarts), (RuntimeState::Healthy, 1));
    assert_ne!(status.pid, Some(pid));
}

fn nix_kill(pid: u32) {
    #[allow(clippy::disallowed_methods)] // The test kills the runtime server as a crash would.
    let status = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn a_runtime_that_never_becomes_healthy_fails_with_its_logs() {
    let workspace = tempfile::tempdir().expect("workspace");
    let (_control, _daemon, mut link) = connected(workspace.path()).await;
    let start = RuntimeStart {
        command: "echo 'fatal: no module named fastapi' >&2; exit 1".to_owned(),
        start_timeout_ms: 1500,
        cwd: None,
        ..echo_runtime(workspace.path())
    };
    let failure = error(link.request("s1", Operation::RuntimeStart(start)).await.0);
    assert_eq!(failure.code, error_code::RUNTIME_UNHEALTHY);
    let logs = failure.details["recent_logs"].to_string();
    assert!(logs.contains("fatal: no module named fastapi"), "{logs}");

    let advance = advance_op(json!({}), 1000);
    assert_eq!(error(link.request("a1", advance).await.0).code, error_code::RUNTIME_NOT_STARTED);
}

#[tokio::test]
async fn a_runtime_error_response_carries_status_body_and_logs() {
    let fail = "        print('advance failed: database locked', file=sys.stderr, flush=True)\n        self.send_response(500); self.end_headers(); self.wfile.write(b'internal boom')";
    let (_workspace, _control, _daemon, mut link) = python_runtime(fail).await;
    let failure = error(link.request("a1", advance_op(json!({}), 5000)).await.0);
    assert_eq!(failure.code, error_code::RUNTIME_HTTP_ERROR);
    assert_eq!(failure.details["status"], 500);
    assert_eq!(failure.details["body_excerpt"], "internal boom");
    assert!(failure.details["recent_logs"].to_string().contains("database locked"), "{}", failure.details);
}

/// A daemon running a healthy runtime server whose advance handler runs `on_post` (Python, with
/// `self` the handler, the request body already read).
async fn python_runtime(
    on_post: &str,
) -> (tempfile::TempDir, FakeControl, dari_tests::fake_control::DaemonProcess, Link) {
    let workspace = tempfile::tempdir().expect("workspace");
    let server = format!(
        "import http.server, json, os, sys\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n    def do_POST(self):\n        self.rfile.read(int(self.headers.get('content-length', 0)))\n{on_post}\nhttp.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
    );
    std::fs::write(workspace.path().join("server.py"), server).expect("write the server");
    let start = RuntimeStart { command: "python3 server.py".to_owned(), cwd: None, ..echo_runtime(workspace.path()) };
    let (control, daemon, mut link) = connected(workspace.path()).await;
    let _: RuntimeStatus = value(link.request("start", Operation::RuntimeStart(start)).await.0);
    (workspace, control, daemon, link)
}

#[tokio::test]
async fn an_advance_carries_controls_headers_and_refuses_bad_ones() {
    let echo_headers = "        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()\n        self.send_response(200); self.send_header('content-type', 'application/json'); self.end_headers(); self.wfile.write(body)";
    let (_workspace, _control, _daemon, mut link) = python_runtime(echo_headers).await;
    let headers: BTreeMap<String, String> = [
        ("Dari-Protocol", "dari-runtime-v1"),
        ("Dari-Session-Id", "sess_1"),
        ("Dari-Message-Id", "msg_1"),
        ("Idempotency-Key", "msg_1:1"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let advance = Operation::RuntimeAdvance { body: json!({}), timeout_ms: 10_000, headers: headers.clone() };
    let response: AdvanceResponse = value(link.request("a1", advance).await.0);
    for (name, sent) in &headers {
        assert_eq!(response.body[name.to_ascii_lowercase()], json!(sent), "{}", response.body);
    }
    assert_eq!(response.body["content-type"], "application/json");

    for (name, bad_value) in [("Dari-Session-Id", "sess_1\r\nX-Evil: 1"), ("Bad Name", "x"), ("Host", "evil")] {
        let headers = BTreeMap::from([(name.to_owned(), bad_value.to_owned())]);
        let advance = Operation::RuntimeAdvance { body: json!({}), timeout_ms: 10_000, headers };
        let failure = error(link.request(&format!("bad-{name}"), advance).await.0);
        assert_eq!(failure.code, error_code::BAD_REQUEST, "{name}: {}", failure.message);
    }
    let many: BTreeMap<String, String> = (0..33).map(|index| (format!("X-{index}"), "v".to_owned())).collect();
    let advance = Operation::RuntimeAdvance { body: json!({}), timeout_ms: 10_000, headers: many };
    assert_eq!(error(link.request("many", advance).await.0).code, error_code::BAD_REQUEST);
}

#[tokio::test]
async fn a_runtime_that_dies_while_answering_is_reported_as_crashed() {
    let die = "        print('advance: giving up on the database', flush=True)\n        os._exit(3)";
    let (_workspace, _control, _daemon, mut link) = python_runtime(die).await;
    let failure = error(link.request("a1", advance_op(json!({}), 10_000)).await.0);
    assert_eq!(failure.code, error_code::RUNTIME_CRASHED, "{}: {}", failure.message, failure.details);
    assert!(failure.message.contains("exited with code 3"), "{}", failure.message);
    assert_eq!(failure.details["exit_code"], 3);
    assert_eq!(failure.details["signal"], serde_json::Value::Null);
    let logs = failure.details["recent_logs"].to_string();
    assert!(logs.contains("advance: giving up on the database"), "{logs}");
}

#[tokio::test]
async fn a_terminal_echoes_input_and_reports_its_exit() {
    let workspace = tempfile::tempdir().expect("workspace");
    let (_control, _daemon, mut link) = connected(workspace.path()).await;
    let open = PtyOpen {
        id: "t1".to_owned(),
        command: Some(vec!["sh".to_owned()]),
        cwd: None,
        env: BTreeMap::new(),
        cols: 80,
        rows: 24,
    };
    let _: serde_json::Value = value(link.request("p1", Operation::PtyOpen(open)).await.0);
    let input = Operation::PtyInput { id: "t1".to_owned(), data: "echo sum=$((40+2)); exit 7\n".to_owned() };
    let _: serde_json::Value = value(link.request("p2", input).await.0);
    let mut output = String::new();
    while !output.contains("sum=42") {
        if let DaemonEvent::PtyOutput { data, .. } =
            link.event(|event| matches!(event, DaemonEvent::PtyOutput { .. })).await
        {
            output.push_str(&data);
        }
    }
    let exited = link.event(|event| matches!(event, DaemonEvent::PtyExited { .. })).await;
    assert_eq!(exited, DaemonEvent::PtyExited { id: "t1".to_owned(), code: Some(7) });
}

/// A static binary that asks glibc about a user `/etc/passwd` does not list loads NSS modules at
/// run time, which crashed the process; the daemon runs as such users in some sandboxes, and
/// starts without `HOME` or `SHELL` here.
#[tokio::test]
async fn a_terminal_opens_for_a_user_that_etc_passwd_does_not_list() {
    const UNLISTED_UID: u32 = 54_321;
    let is_root =
        std::fs::metadata("/proc/self").is_ok_and(|metadata| std::os::unix::fs::MetadataExt::uid(&metadata) == 0);
    if !is_root {
        eprintln!("skipped: running the daemon as another user needs root (CI runs as root)");
        return;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if passwd.lines().any(|line| line.split(':').nth(2) == Some(&UNLISTED_UID.to_string())) {
        eprintln!("skipped: /etc/passwd lists uid {UNLISTED_UID}");
        return;
    }
    let workspace = tempfile::tempdir().expect("workspace");
    std::fs::set_permissions(workspace.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let mut control = FakeControl::start().await;
    let mut daemon = control.spawn_daemon_as(workspace.path(), TOKEN, Some(UNLISTED_UID));
    let mut link = control.accept().await;
    link.welcome(0).await;
    let open = PtyOpen {
        id: "t1".to_owned(),
        command: Some(vec!["sh".to_owned(), "-c".to_owned(), "echo home=$HOME shell=$SHELL".to_owned()]),
        cwd: None,
        env: BTreeMap::new(),
        cols: 80,
        rows: 24,
    };
    let _: serde_json::Value = value(link.request("p1", Operation::PtyOpen(open)).await.0);
    let mut output = String::new();
    loop {
        match link.event(|event| matches!(event, DaemonEvent::PtyOutput { .. } | DaemonEvent::PtyExited { .. })).await {
            DaemonEvent::PtyOutput { data, .. } => output.push_str(&data),
            exited => {
                assert_eq!(exited, DaemonEvent::PtyExited { id: "t1".to_owned(), code: Some(0) });
                break;
            }
        }
    }
    let shell = if Path::new("/bin/bash").exists() { "/bin/bash" } else { "/bin/sh" };
    assert!(output.contains(&format!("home=/ shell={shell}")), "{output:?}");
    assert_eq!(daemon.terminate().await, Some(0));
}

#[tokio::test]
async fn a_watch_reports_changes_relative_to_the_workspace() {
    let workspace = tempfile::tempdir().expect("workspace");
    let (_control, _daemon, mut link) = connected(workspace.path()).await;
    let watch = FsWatch { id: "w1".to_owned(), path: String::new(), recursive: true, debounce_ms: Some(50) };
    let _: serde_json::Value = value(link.request("f1", Operation::FsWatch(watch)).await.0);
    std::fs::create_dir(workspace.path().join("src")).expect("mkdir");
    std::fs::write(workspace.path().join("src/main.rs"), "fn main() {}\n").expect("write");
    let mut seen = Vec::new();
    while !seen.iter().any(|path: &String| path == "src/main.rs") {
        if let DaemonEvent::FilesChanged { changes, .. } =
            link.event(|event| matches!(event, DaemonEvent::FilesChanged { .. })).await
        {
            seen.extend(changes.into_iter().map(|change| change.path));
        }
    }
    let escape = FsWatch { id: "w2".to_owned(), path: "../".to_owned(), recursive: true, debounce_ms: None };
    assert_eq!(error(link.request("f2", Operation::FsWatch(escape)).await.0).code, error_code::FAILED);
}

#[tokio::test]
async fn built_in_tools_refuse_hostile_arguments_over_the_link() {
    let workspace = tempfile::tempdir().expect("workspace");
    std::os::unix::fs::symlink("/etc", workspace.path().join("etc-link")).expect("symlink");
    std::fs::write(workspace.path().join("binary.bin"), [0u8, 159, 146, 150, 0, 1]).expect("write");
    let (_control, _daemon, mut link) = connected(workspace.path()).await;
    let cases = [
        ("read", json!({"path": "../../etc/passwd"})),
        ("read", json!({"path": "/etc/passwd"})),
        ("read", json!({"path": "etc-link/passwd"})),
        ("read", json!({"path": "binary.bin"})),
        ("read", json!({"path": "nul\u{0}byte"})),
        ("write", json!({"path": "etc-link/evil", "content": "x"})),
        ("edit", json!({"path": "/etc/hostname", "edits": [{"oldText": "a", "newText": "b"}]})),
        ("ls", json!({"path": "/"})),
        ("grep", json!({"pattern": "root", "path": "/etc"})),
        ("find", json!({"pattern": "*", "path": "../"})),
        ("bash", json!({"command": "echo \u{0}"})),
        ("read", json!({"offset": "not a number"})),
    ];
    for (index, (name, arguments)) in cases.into_iter().enumerate() {
        let op = Operation::ToolRun { name: name.to_owned(), arguments: arguments.clone() };
        let (outcome, _) = link.request(&format!("h{index}"), op).await;
        let result = outcome.tool_result().expect("a tool result");
        assert!(result.is_error, "{name} {arguments} was accepted: {}", result.joined_text());
    }
    assert!(!Path::new("/etc/evil").exists());

    let huge = Operation::ToolRun { name: "bash".to_owned(), arguments: json!({"command": "seq 1 300000"}) };
    let result = link.request("huge", huge).await.0.tool_result().expect("a tool result");
    let text = result.joined_text();
    assert!(text.len() <= 51_200 + 200, "{} bytes reached the model", text.len());
    assert!(
        text.contains("300000") && text.contains("Full output: .dari/tool-output/"),
        "{}",
        &text[text.len() - 200..]
    );
}

#[tokio::test]
async fn a_python_custom_tool_runs_from_the_bundle_with_its_logs_apart() {
    let workspace = tempfile::tempdir().expect("workspace");
    let tool_dir = workspace.path().join(".dari/agent-resources/source-bundle/tools/count");
    std::fs::create_dir_all(&tool_dir).expect("tool directory");
    let handler = "import os\n\ndef main(input):\n    print('counting', flush=True)\n    return {'words': len(input['text'].split()), 'bundle': os.environ['DARI_SOURCE_BUNDLE_ROOT'].endswith('source-bundle')}\n\ndef broken(input):\n    raise ValueError('no text given')\n";
    std::fs::write(tool_dir.join("handler.py"), handler).expect("write the handler");
    let (_control, _daemon, mut link) = connected(workspace.path()).await;
    let run = |function: &str| {
        Operation::CustomToolRun(dari_protocol::link::CustomToolRun {
            name: "count".to_owned(),
            runtime: "python".to_owned(),
            handler_file: "tools/count/handler.py".to_owned(),
            function: function.to_owned(),
            input: json!({"text": "one two three"}),
            timeout_ms: 10_000,
        })
    };
    let output: dari_protocol::link::CustomToolOutput = value(link.request("c1", run("main")).await.0);
    assert_eq!(output.output, json!({"words": 3, "bundle": true}));
    assert!(output.logs.contains("counting"), "{}", output.logs);
    let failure = error(link.request("c2", run("broken")).await.0);
    assert_eq!(failure.code, error_code::TOOL_FAILED);
    assert!(failure.message.contains("ValueError: no text given"), "{}", failure.message);
}

/// Each entry of a tree, with its kind, mode and contents or target, sorted by path.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, relative: &str, out: &mut Vec<String>) {
        use std::os::unix::fs::PermissionsExt;
        let mut entries: Vec<_> = std::fs::read_dir(root.join(relative)).expect("read dir").flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if relative.is_empty() { name } else { format!("{relative}/{name}") };
            let metadata = std::fs::symlink_metadata(entry.path()).expect("metadata");
            let mode = metadata.permissions().mode() & 0o777;
            if metadata.file_type().is_symlink() {
                out.push(format!("{path} -> {}", std::fs::read_link(entry.path()).expect("link").display()));
            } else if metadata.is_dir() {
                out.push(format!("{path}/ {mode:o}"));
                walk(root, &path, out);
            } else {
                let contents = std::fs::read(entry.path()).expect("read");
                out.push(format!("{path} {mode:o} {}", String::from_utf8_lossy(&contents)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out
}

#[tokio::test]
async fn a_workspace_archived_by_one_daemon_is_restored_by_another() {
    use std::os::unix::fs::PermissionsExt;
    let source = tempfile::tempdir().expect("source workspace");
    let root = source.path();
    std::fs::create_dir_all(root.join("src/deep/er")).expect("mkdir");
    std::fs::create_dir_all(root.join("empty")).expect("mkdir");
    std::fs::create_dir_all(root.join("node_modules/left-pad")).expect("mkdir");
    std::fs::create_dir_all(root.join(".dari/agent-resources/source-bundle")).expect("mkdir");
    std::fs::write(root.join("notes.md"), "remember abc123\n").expect("write");
    std::fs::write(root.join("src/deep/er/lib.rs"), "pub fn f() {}\n").expect("write");
    std::fs::write(root.join("tool.sh"), "#!/bin/sh\necho tool\n").expect("write");
    std::fs::set_permissions(root.join("tool.sh"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(root.join("node_modules/left-pad/index.js"), "x\n").expect("write");
    std::fs::write(root.join(".dari/agent-resources/source-bundle/dari.yml"), "name: x\n").expect("write");
    std::os::unix::fs::symlink("src/deep/er/lib.rs", root.join("lib-link")).expect("symlink");
    let (_control, _daemon, mut link) = connected(root).await;
    let (put_url, mut uploads) = receive_bytes().await;

    let archive = |max_bytes| {
        Operation::WorkspaceArchive(WorkspaceArchive {
            url: put_url.clone(),
            exclude: vec!["node_modules".to_owned()],
            max_bytes,
        })
    };
    let failure = error(link.request("w0", archive(64)).await.0);
    assert_eq!(failure.code, error_code::FAILED);
    assert!(failure.message.contains("limit of 64 bytes"), "{}", failure.message);
    let archived: WorkspaceArchived = value(link.request("w1", archive(1 << 30)).await.0);
    let bytes = tokio::time::timeout(dari_tests::fake_control::PATIENCE, uploads.recv())
        .await
        .expect("the archive arrives in time")
        .expect("an upload");
    assert_eq!((bytes.len() as u64, archived.file_count), (archived.size_bytes, 3));
    assert_eq!(dari_bundle::sha256_hex(&bytes), archived.sha256);
    let bad_url = WorkspaceArchive { url: "ftp://x/y".to_owned(), exclude: Vec::new(), max_bytes: 1 << 30 };
    let failure = error(link.request("w2", Operation::WorkspaceArchive(bad_url)).await.0);
    assert_eq!(failure.code, error_code::BAD_REQUEST);

    let target = tempfile::tempdir().expect("target workspace");
    std::fs::write(target.path().join("notes.md"), "stale\n").expect("write");
    let (_control, _daemon, mut link) = connected(target.path()).await;
    let get_url = serve_bytes(bytes).await;
    let restore = |sha256: &str| {
        Operation::WorkspaceRestore(WorkspaceRestore {
            url: get_url.clone(),
            sha256: sha256.to_owned(),
            size_bytes: archived.size_bytes,
        })
    };
    let failure = error(link.request("r0", restore(&"0".repeat(64))).await.0);
    assert!(failure.message.contains("sha256"), "{}", failure.message);
    assert_eq!(std::fs::read_to_string(target.path().join("notes.md")).expect("read"), "stale\n");
    let restored: WorkspaceRestored = value(link.request("r1", restore(&archived.sha256)).await.0);
    assert_eq!(restored.file_count, 3);

    std::fs::remove_dir_all(root.join("node_modules")).expect("remove");
    std::fs::remove_dir_all(root.join(".dari/agent-resources")).expect("remove");
    assert_eq!(tree(target.path()), tree(root));
}
