use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::test_support::{assert_group_gone, patience, trace_init};
use super::{Capture, ChildSpec, Env, GroupChild, ProcessError, Stdin, Termination, terminate_group_gracefully};

/// `/bin/sh -c script` in the temp dir, stdout piped, stderr dropped.
fn sh(script: &str, env: Env) -> ChildSpec {
    ChildSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: std::env::temp_dir(),
        env,
        stdin: Stdin::Null,
        stdout: Capture::Piped,
        stderr: Capture::Null,
    }
}

fn inherit() -> Env {
    Env::Inherit { overrides: Vec::new() }
}

/// Starts `script`, which must print a line once it is ready, and waits for that line.
async fn started(script: &str) -> GroupChild {
    let mut child = sh(script, inherit()).spawn().expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    tokio::time::timeout(patience(), stdout.read_line(&mut line)).await.expect("ready in time").expect("read");
    assert_eq!(line, "ready\n");
    child
}

async fn output_of(spec: ChildSpec) -> String {
    let mut child = spec.spawn().expect("spawn");
    let mut text = String::new();
    child.stdout.take().expect("piped stdout").read_to_string(&mut text).await.expect("read");
    assert!(child.wait().await.expect("wait").success());
    text
}

#[tokio::test]
async fn the_environment_is_chosen() {
    trace_init();
    let env = |env| ChildSpec { program: "/usr/bin/env".into(), args: Vec::new(), ..sh("", env) };
    let clear = Env::Clear { vars: vec![("ONLY".into(), "1".into())] };
    assert_eq!(output_of(env(clear)).await, "ONLY=1\n", "exactly the given variables");
    let overrides = Env::Inherit { overrides: vec![("ONLY".into(), "2".into())] };
    let inherited = output_of(env(overrides)).await;
    assert!(inherited.lines().any(|line| line == "ONLY=2") && inherited.lines().count() > 1, "{inherited}");
    let dir = tempfile::tempdir().expect("temp dir");
    let cwd = std::fs::canonicalize(dir.path()).expect("canonical");
    assert_eq!(
        output_of(ChildSpec { cwd: cwd.clone(), ..sh("pwd -P", inherit()) }).await,
        format!("{}\n", cwd.display())
    );
}

#[tokio::test]
async fn each_child_leads_its_own_group() {
    trace_init();
    let child = started("echo ready; sleep 300").await;
    let pgid = nix::unistd::getpgid(Some(child.pgid())).expect("getpgid");
    assert_eq!((pgid, child.pgid().as_raw()), (child.pgid(), i32::try_from(child.pid()).expect("pid")));
    assert_ne!(pgid, nix::unistd::getpgrp(), "not in the test's group");
}

#[tokio::test]
async fn kill_and_reap_kills_the_whole_group() {
    trace_init();
    let mut child = started("sleep 300 & echo ready; sleep 300").await;
    let status = child.kill_and_reap().await.expect("kill");
    assert_eq!(status.signal(), Some(9));
    assert_group_gone(child.pgid()).await;
}

#[tokio::test]
async fn dropping_the_handle_kills_the_group() {
    trace_init();
    let child = started("sleep 300 & echo ready; sleep 300").await;
    let pgid = child.pgid();
    drop(child);
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn terminate_gracefully_lets_a_group_exit_or_kills_it() {
    trace_init();
    let mut child = started("trap 'exit 3' TERM; sleep 300 & echo ready; wait").await;
    let status = child.terminate_gracefully(patience()).await.expect("terminate");
    assert_eq!(status.code(), Some(3), "the shell ran its trap");
    assert_group_gone(child.pgid()).await;

    let mut child = started("trap '' TERM; sleep 300 & echo ready; sleep 300").await;
    let status = child.terminate_gracefully(Duration::from_millis(200)).await.expect("terminate");
    assert_eq!(status.signal(), Some(9), "SIGTERM is ignored, SIGKILL is not");
    assert_group_gone(child.pgid()).await;
}

#[tokio::test]
async fn terminate_group_gracefully_by_pgid() {
    trace_init();
    // The leader exits at once; its background job is what is left of the group.
    let mut child = started("sleep 300 & echo ready").await;
    assert!(child.wait().await.expect("wait").success());
    let pgid = child.pgid();
    let termination = terminate_group_gracefully(pgid, patience()).await.expect("terminate");
    assert_eq!(termination, Termination::Graceful);
    assert_group_gone(pgid).await;

    let mut child = started("trap '' TERM; sleep 300 & echo ready").await;
    assert!(child.wait().await.expect("wait").success());
    let pgid = child.pgid();
    let termination = terminate_group_gracefully(pgid, Duration::from_millis(200)).await.expect("terminate");
    assert_eq!(termination, Termination::Forced);
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn spawn_errors_name_the_program() {
    trace_init();
    let spec = ChildSpec { program: "/no/such/program".into(), ..sh("", inherit()) };
    let error = spec.spawn().err().expect("spawn fails");
    assert!(matches!(&error, ProcessError::Spawn { program, .. } if program == "/no/such/program"), "{error:?}");
    assert_eq!(error.to_string(), "spawn /no/such/program");
}
