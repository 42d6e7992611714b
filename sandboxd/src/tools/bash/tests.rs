use dari_protocol::tools::ToolResult;
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::process::test_support::{assert_group_gone, patience, trace_init};
use crate::tools::{BashConfig, FileLocks, ToolContext, ToolUpdate, Workspace, run_tool};

struct Fixture {
    _dir: tempfile::TempDir,
    context: ToolContext,
}

fn fixture() -> Fixture {
    trace_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = Workspace::new(dir.path()).expect("workspace");
    let bash = BashConfig::for_workspace(workspace.root());
    Fixture { _dir: dir, context: ToolContext { workspace, locks: FileLocks::default(), bash } }
}

/// Runs bash with `arguments`, failing the test rather than hanging.
async fn bash(context: &ToolContext, arguments: Value) -> ToolResult {
    let run = run_tool(context, "bash", arguments, CancellationToken::new(), None);
    tokio::time::timeout(patience(), run).await.expect("bash returned within the test patience")
}

#[track_caller]
fn check(result: &ToolResult, is_error: bool, text: &str) {
    assert_eq!((result.joined_text().as_str(), result.is_error), (text, is_error));
}

/// The pid printed by `echo $$` on the first line, which is also the process group id.
fn first_line_pid(text: &str) -> Pid {
    Pid::from_raw(text.lines().next().and_then(|line| line.parse().ok()).expect("a pid on the first line"))
}

#[tokio::test]
async fn commands_and_their_endings() {
    let fixture = fixture();
    let root = fixture.context.workspace.root().display().to_string();
    let cases = [
        (json!({"command": "echo hello"}), false, "hello\n".to_owned()),
        (json!({"command": "true"}), false, "(no output)".to_owned()),
        (json!({"command": "echo err >&2"}), false, "err\n".to_owned()),
        (json!({"command": "pwd; echo $PWD"}), false, format!("{root}\n{root}\n")),
        (json!({"command": "exit 3"}), true, "(no output)\n\nCommand exited with code 3".to_owned()),
        (json!({"command": "echo oops; exit 2"}), true, "oops\n\n\nCommand exited with code 2".to_owned()),
        (json!({"command": "kill -KILL $$"}), true, "Command terminated by signal SIGKILL".to_owned()),
        (json!({"command": "printf '\\377\\376'"}), false, "\u{FFFD}\u{FFFD}".to_owned()),
        (json!({"command": "echo a", "timeout": "5"}), false, "a\n".to_owned()),
        (json!({"command": "echo a", "timeout": 0.5}), false, "a\n".to_owned()),
    ];
    for (arguments, is_error, text) in cases {
        check(&bash(&fixture.context, arguments).await, is_error, &text);
    }
    let result = bash(&fixture.context, json!({"command": "echo oops; exit 2"})).await;
    assert_eq!(result.details, json!({"exitCode": 2, "timedOut": false}));
}

#[tokio::test]
async fn stdout_and_stderr_are_merged() {
    let fixture = fixture();
    let result = bash(&fixture.context, json!({"command": "echo out; echo err >&2; echo out2"})).await;
    let text = result.joined_text();
    assert!(!result.is_error);
    assert_eq!(text.len(), "out\nerr\nout2\n".len(), "{text:?}");
    for line in ["out\n", "err\n", "out2\n"] {
        assert!(text.contains(line), "{text:?}");
    }
    assert!(text.find("out\n") < text.find("out2\n"), "each pipe stays in order: {text:?}");
}

#[tokio::test]
async fn bad_arguments_are_error_results() {
    let fixture = fixture();
    let cases = [
        (json!({"command": "echo a\u{0}b"}), "invalid arguments for bash: command contains a NUL byte"),
        (json!({"command": "true", "timeout": 0}), "timeout must be a positive number of seconds, got 0"),
        (json!({"command": "true", "timeout": -1}), "timeout must be a positive number of seconds, got -1"),
        (json!({"command": "true", "timeout": "soon"}), "timeout must be a positive number of seconds, got \"soon\""),
        (json!({"timeout": 1}), "invalid arguments for bash: missing field `command`"),
    ];
    for (arguments, expected) in cases {
        let result = bash(&fixture.context, arguments.clone()).await;
        assert!(result.is_error, "{arguments}");
        assert!(result.joined_text().contains(expected), "{arguments}: {}", result.joined_text());
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let fixture = fixture();
    let result = bash(&fixture.context, json!({"command": "echo $$; sleep 300 & sleep 300", "timeout": 1})).await;
    let text = result.joined_text();
    let pgid = first_line_pid(&text);
    check(&result, true, &format!("{pgid}\n\n\nCommand timed out after 1 seconds"));
    assert_eq!(result.details, json!({"exitCode": null, "timedOut": true}));
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn background_jobs_do_not_hang_the_call() {
    let fixture = fixture();
    let command = "echo $$; sleep 100 & (while true; do echo tick; sleep 1; done) & echo started";
    let result = bash(&fixture.context, json!({"command": command})).await;
    let text = result.joined_text();
    assert!(!result.is_error, "{text}");
    assert!(text.contains("started\n"), "{text}");
    assert_group_gone(first_line_pid(&text)).await;
}

#[tokio::test]
async fn huge_output_keeps_the_tail_and_saves_everything() {
    let fixture = fixture();
    let result = bash(&fixture.context, json!({"command": "seq 1 200000"})).await;
    let path = result.details["fullOutputPath"].as_str().expect("fullOutputPath").to_owned();
    let hex = path.strip_prefix(".dari/tool-output/bash-").and_then(|rest| rest.strip_suffix(".log"));
    assert!(hex.is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit())), "{path}");
    let tail: String = (198_002..=200_000).map(|n| format!("{n}\n")).collect();
    check(&result, false, &format!("{tail}\n\n[Showing lines 198002-200001 of 200001. Full output: {path}]"));
    assert_eq!(result.details["truncation"]["truncatedBy"], "lines");
    assert_eq!(result.details["truncation"]["totalLines"], 200_001);
    assert!(result.details["truncation"].get("content").is_none());
    let saved = std::fs::read_to_string(fixture.context.workspace.root().join(&path)).expect("full output file");
    let everything: String = (1..=200_000).map(|n| format!("{n}\n")).collect();
    assert!(saved == everything, "the file holds the whole output ({} bytes)", saved.len());
}

#[tokio::test]
async fn footers_name_the_limit_that_cut() {
    let fixture = fixture();
    let cases = [
        // 1000 lines of 100 bytes: over 50 KB, under 2000 lines.
        ("for i in $(seq 1 1000); do printf '%099d\\n' $i; done", "[Showing lines 489-1001 of 1001 (50.0KB limit)"),
        // One line of 70000 bytes and no newline.
        ("head -c 70000 /dev/zero | tr '\\0' x", "[Showing last 50.0KB of line 1 (line is 68.4KB)"),
        // 3001 lines in 13893 bytes: cut by lines, and saved although under 50 KB.
        ("seq 1 3000", "[Showing lines 1002-3001 of 3001"),
    ];
    for (command, footer) in cases {
        let result = bash(&fixture.context, json!({"command": command})).await;
        let path = result.details["fullOutputPath"].as_str().expect("fullOutputPath");
        let text = result.joined_text();
        assert!(text.ends_with(&format!("{footer}. Full output: {path}]")), "{command}: {}", &text[text.len() - 200..]);
        let saved = std::fs::read(fixture.context.workspace.root().join(path)).expect("full output file");
        assert_eq!(saved.len(), result.details["truncation"]["totalBytes"], "{command}");
    }
}

#[tokio::test]
async fn cancellation_kills_the_group() {
    let fixture = fixture();
    let cancel = CancellationToken::new();
    let (updates_tx, mut updates_rx) = mpsc::channel(64);
    let arguments = json!({"command": "echo $$; sleep 300"});
    let run = run_tool(&fixture.context, "bash", arguments, cancel.clone(), Some(updates_tx));
    let watch = async {
        let first: ToolUpdate = updates_rx.recv().await.expect("an update with the pid");
        cancel.cancel();
        while updates_rx.recv().await.is_some() {}
        first
    };
    let (result, first) =
        tokio::time::timeout(patience(), async { tokio::join!(run, watch) }).await.expect("bash ended");
    let pgid = first_line_pid(&first.chunk);
    check(&result, true, &format!("{pgid}\n\n\nCommand aborted"));
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn updates_are_streamed_and_throttled() {
    let fixture = fixture();
    let (updates_tx, mut updates_rx) = mpsc::channel(64);
    let command = "for i in $(seq 1 30); do echo $i; sleep 0.02; done";
    let started = Instant::now();
    let run =
        run_tool(&fixture.context, "bash", json!({"command": command}), CancellationToken::new(), Some(updates_tx));
    let gather = async {
        let mut updates = Vec::new();
        while let Some(update) = updates_rx.recv().await {
            updates.push(update.chunk);
        }
        updates
    };
    let (result, updates) = tokio::time::timeout(patience(), async { tokio::join!(run, gather) }).await.expect("ended");
    let elapsed = started.elapsed();
    let everything: String = (1..=30).map(|n| format!("{n}\n")).collect();
    check(&result, false, &everything);
    assert_eq!(updates.concat(), everything, "updates carry the output once, in order");
    assert!(updates.len() >= 2, "output arrives while the command runs: {updates:?}");
    let allowed = elapsed.as_millis() / 100 + 2;
    assert!(updates.len() as u128 <= allowed, "{} updates in {elapsed:?}", updates.len());
}

#[tokio::test]
async fn processes_that_leave_the_group_do_not_hang_the_call() {
    let fixture = fixture();
    // `setsid` puts the job in a session of its own, out of reach of the group kill; it keeps
    // the pipes open, and the call stops reading shortly after the shell exits.
    let result = bash(&fixture.context, json!({"command": "setsid sleep 30 & echo $!"})).await;
    let escaped = first_line_pid(&result.joined_text());
    check(&result, false, &format!("{escaped}\n"));
    nix::sys::signal::kill(escaped, nix::sys::signal::Signal::SIGKILL).expect("kill the escaped job");
    assert_group_gone(escaped).await;
}
