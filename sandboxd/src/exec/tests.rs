use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ExecError, ExecEvent, ExecOutcome, ExecRequest, exec};
use crate::process::test_support::{patience, trace_init};
use crate::tools::Workspace;

/// What a run produced: stdout and stderr apart, the final event, and the outcome.
#[derive(Debug)]
struct Ran {
    stdout: String,
    stderr: String,
    exited: Option<ExecEvent>,
    outcome: ExecOutcome,
}

fn workspace() -> (tempfile::TempDir, Workspace) {
    trace_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = Workspace::new(dir.path()).expect("workspace");
    (dir, workspace)
}

async fn run(workspace: &Workspace, request: ExecRequest, cancel: CancellationToken) -> Result<Ran, ExecError> {
    let (events_tx, mut events_rx) = mpsc::channel(4);
    let gather = async {
        let (mut stdout, mut stderr, mut exited) = (Vec::new(), Vec::new(), None);
        while let Some(event) = events_rx.recv().await {
            assert!(exited.is_none(), "Exited is the last event");
            match event {
                ExecEvent::Stdout(chunk) => stdout.extend_from_slice(&chunk),
                ExecEvent::Stderr(chunk) => stderr.extend_from_slice(&chunk),
                ExecEvent::Exited { .. } => exited = Some(event),
            }
        }
        (String::from_utf8(stdout).expect("utf-8"), String::from_utf8(stderr).expect("utf-8"), exited)
    };
    let both = async { tokio::join!(exec(workspace, request, events_tx, cancel), gather) };
    let (outcome, (stdout, stderr, exited)) = tokio::time::timeout(patience(), both).await.expect("exec ended");
    Ok(Ran { stdout, stderr, exited, outcome: outcome? })
}

fn argv(words: &[&str]) -> ExecRequest {
    ExecRequest { argv: Some(words.iter().map(|word| (*word).to_owned()).collect()), ..ExecRequest::default() }
}

fn shell(command: &str) -> ExecRequest {
    ExecRequest { shell: Some(command.to_owned()), ..ExecRequest::default() }
}

const EXITED_0: ExecOutcome = ExecOutcome { code: Some(0), signal: None, timed_out: false, cancelled: false };

#[tokio::test]
async fn argv_runs_directly() {
    let (_dir, workspace) = workspace();
    let ran = run(&workspace, argv(&["echo", "hi", "$HOME"]), CancellationToken::new()).await.expect("exec");
    assert_eq!((ran.stdout.as_str(), ran.stderr.as_str(), ran.outcome), ("hi $HOME\n", "", EXITED_0));
    assert_eq!(ran.exited, Some(ExecEvent::Exited { code: Some(0), signal: None, timed_out: false }));
}

#[tokio::test]
async fn shell_keeps_stdout_and_stderr_apart() {
    let (_dir, workspace) = workspace();
    let ran = run(&workspace, shell("echo out; echo err >&2; exit 4"), CancellationToken::new()).await.expect("exec");
    assert_eq!((ran.stdout.as_str(), ran.stderr.as_str(), ran.outcome.code), ("out\n", "err\n", Some(4)));
}

#[tokio::test]
async fn stdin_is_written_then_closed() {
    let (_dir, workspace) = workspace();
    let big = "line\n".repeat(50_000);
    let request = ExecRequest { stdin: Some(big.clone().into_bytes()), ..argv(&["cat"]) };
    let ran = run(&workspace, request, CancellationToken::new()).await.expect("exec");
    assert_eq!((ran.stdout == big, ran.outcome), (true, EXITED_0));
    let ran = run(&workspace, shell("read line || echo none"), CancellationToken::new()).await.expect("exec");
    assert_eq!(ran.stdout, "none\n", "without stdin the program reads end of file");
}

#[tokio::test]
async fn cwd_and_env() {
    let (dir, workspace) = workspace();
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let request = ExecRequest {
        cwd: Some("sub".to_owned()),
        env: [("GREETING".to_owned(), "hello".to_owned())].into(),
        ..shell("pwd; echo $PWD $GREETING")
    };
    let ran = run(&workspace, request, CancellationToken::new()).await.expect("exec");
    let sub = workspace.root().join("sub").display().to_string();
    assert_eq!(ran.stdout, format!("{sub}\n{sub} hello\n"));
}

#[tokio::test]
async fn timeout_and_cancellation_kill() {
    let (_dir, workspace) = workspace();
    let request = ExecRequest { timeout: Some(Duration::from_secs(1)), ..argv(&["sleep", "30"]) };
    let ran = run(&workspace, request, CancellationToken::new()).await.expect("exec");
    let killed = ExecOutcome { code: None, signal: Some(9), timed_out: true, cancelled: false };
    assert_eq!(ran.outcome, killed);
    assert_eq!(ran.exited, Some(ExecEvent::Exited { code: None, signal: Some(9), timed_out: true }));
    let cancel = CancellationToken::new();
    cancel.cancel();
    let ran = run(&workspace, argv(&["sleep", "30"]), cancel).await.expect("exec");
    assert_eq!(ran.outcome, ExecOutcome { timed_out: false, cancelled: true, ..killed });
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let (_dir, workspace) = workspace();
    let cases = [
        (ExecRequest { cwd: Some("../".to_owned()), ..argv(&["true"]) }, "use ../ as the working directory"),
        (ExecRequest { cwd: Some("/etc".to_owned()), ..argv(&["true"]) }, "use /etc as the working directory"),
        (ExecRequest { cwd: Some("missing".to_owned()), ..argv(&["true"]) }, "not an existing directory"),
        (ExecRequest { shell: Some("true".to_owned()), ..argv(&["true"]) }, "not both"),
        (ExecRequest::default(), "give argv or shell"),
        (argv(&[]), "argv is empty"),
        (argv(&["echo", "a\0b"]), "NUL"),
        (ExecRequest { env: [("A=B".to_owned(), "c".to_owned())].into(), ..argv(&["true"]) }, "environment"),
    ];
    for (request, expected) in cases {
        let error = run(&workspace, request.clone(), CancellationToken::new()).await.expect_err("refused");
        assert!(error.to_string().contains(expected), "{request:?}: {error}");
    }
    let error = run(&workspace, argv(&["/no/such/program"]), CancellationToken::new()).await.expect_err("refused");
    assert!(matches!(&error, ExecError::Spawn { program, .. } if program == "/no/such/program"), "{error:?}");
}
