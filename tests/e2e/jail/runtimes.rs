//! Prepared runtimes through the real server: a version's `sandbox.setup.script` and
//! `sandbox.packages.apt` run once, in a build jail, and every session of the version (and of a
//! later version with the same setup) sees what they installed, while the host does not. The
//! build's log is read through the API and the CLI; a failing setup fails the message with it.

use std::time::{Duration, Instant};

use dari_tests::control::{ControlServer, DeployedAgent, Engine};
use dari_tests::fake_llm::FakeLlm;
use reqwest::StatusCode;
use serde_json::Value;

use super::{bash_in_session as run_bash, running_as_root};
use crate::execution::new_session;
use crate::pi::{deploy, manifest, server};

/// How long a build may take before a test gives up: apt reaches Debian's mirrors.
fn build_patience() -> Duration {
    let seconds = std::env::var("DARI_TEST_RUNTIME_PATIENCE_SECS").ok().and_then(|value| value.parse().ok());
    Duration::from_secs(seconds.unwrap_or(600))
}

/// The version's prepared runtime, from the API.
async fn runtime(control: &ControlServer, agent: &DeployedAgent) -> Value {
    let path = format!("/v1/agents/{}/versions/{}/runtime", agent.agent_id, agent.version_id);
    let (status, runtime) = control.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{runtime}");
    runtime
}

/// Polls the version's runtime until its build has ended (the build started when it was
/// published).
async fn built(control: &ControlServer, agent: &DeployedAgent) -> Value {
    let deadline = Instant::now() + build_patience();
    loop {
        let runtime = runtime(control, agent).await;
        if matches!(runtime["status"].as_str(), Some("ready" | "failed")) {
            return runtime;
        }
        assert!(Instant::now() < deadline, "the build did not end in time: {runtime}\n{}", control.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SETUP_SCRIPT: &str = "echo setting up from $(pwd)\n\
    mkdir -p /opt\n\
    echo run >> /opt/setup-runs\n\
    printf '#!/bin/sh\\necho hello from setup\\n' > /usr/local/bin/hello-setup\n\
    chmod +x /usr/local/bin/hello-setup\n";

#[tokio::test]
async fn a_setup_script_runs_once_and_every_session_and_version_with_that_setup_shares_it() {
    if !running_as_root() {
        return;
    }
    let _ = std::fs::remove_file("/usr/local/bin/hello-setup");
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).args(["--sandbox-isolation", "jail"]).start().await;
    let setup = manifest("sandbox:\n  setup:\n    script: scripts/setup.sh\n");
    let agent = deploy(&control, &setup, &[("scripts/setup.sh", SETUP_SCRIPT)]).await;

    let command = "hello-setup; wc -l < /opt/setup-runs; touch /usr/local/bin/x 2>&1 | head -1";
    for _ in 0..2 {
        let session_id = new_session(&control, &agent).await;
        let (message, output) = run_bash(&fake, &control, &session_id, command).await;
        assert_eq!(message["status"], "completed", "{message}\n{}", control.log());
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines[..2], ["hello from setup", "1"], "{output}");
        assert!(output.contains("Read-only file system"), "a session cannot change its runtime: {output}");
    }
    assert!(!std::path::Path::new("/usr/local/bin/hello-setup").exists(), "the host is untouched");

    let first = runtime(&control, &agent).await;
    assert_eq!(first["status"], "ready", "{first}");
    assert_eq!(first["built_for_version_id"], agent.version_id.as_str(), "{first}");
    assert!(first["log"].as_str().is_some_and(|log| log.contains("setting up from /bundle")), "{first}");
    assert!(first["finished_at"].is_string() && first["error"].is_null(), "{first}");

    let env = control.cli_env();
    let (agent_id, version_id) = (agent.agent_id.clone(), agent.version_id.clone());
    let cli = tokio::task::spawn_blocking(move || {
        dari_tests::binaries::dari_with_env(&["agent", "version", "runtime", &agent_id, &version_id], &env)
    })
    .await
    .expect("run the CLI");
    let stdout = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert!(stdout.starts_with("status: ready\n") && stdout.contains("setting up from /bundle"), "{stdout}");

    // A new version with the same setup (another prompt) reuses the runtime: no second build.
    let next = deploy(&control, &setup, &[("scripts/setup.sh", SETUP_SCRIPT), ("notes.md", "v2")]).await;
    assert_ne!(next.version_id, agent.version_id);
    let session_id = new_session(&control, &next).await;
    let (message, output) = run_bash(&fake, &control, &session_id, command).await;
    assert_eq!(message["status"], "completed", "{message}");
    assert!(output.starts_with("hello from setup\n1\n"), "the script ran once in all: {output}");
    let second = built(&control, &next).await;
    assert_eq!(second["status"], "ready", "{second}");
    assert_eq!(second["digest"], first["digest"], "{second}");
    assert_eq!(second["built_for_version_id"], agent.version_id.as_str(), "built once, for the first version");
    assert_eq!(second["started_at"], first["started_at"], "{second}");
    assert!(control.unexpected_warnings(&[]).is_empty(), "{}", control.log());
}

#[tokio::test]
async fn a_failing_setup_fails_the_message_with_its_log() {
    if !running_as_root() {
        return;
    }
    for engine in Engine::available() {
        a_failing_setup_fails_the_message_on(engine).await;
    }
}

async fn a_failing_setup_fails_the_message_on(engine: Engine) {
    let fake = FakeLlm::start().await;
    let control = server(engine, &fake).args(["--sandbox-isolation", "jail"]).start().await;
    let script = "echo about to fail\necho 'the setup broke on purpose' >&2\nexit 3\n";
    let agent =
        deploy(&control, &manifest("sandbox:\n  setup:\n    script: setup.sh\n"), &[("setup.sh", script)]).await;
    let session_id = new_session(&control, &agent).await;
    let (message, _) = run_bash(&fake, &control, &session_id, "echo never").await;
    assert_eq!(message["status"], "failed", "{message}");
    let error = &message["output"]["error"];
    assert_eq!(error["type"], "sandbox_setup_failed", "{message}");
    let text = error["message"].as_str().expect("an error message");
    assert!(text.contains("the setup broke on purpose") && text.contains("exit status: 3"), "{text}");
    assert!(text.contains("dari agent version runtime"), "it says where the whole log is: {text}");

    let runtime = runtime(&control, &agent).await;
    assert_eq!(runtime["status"], "failed", "{runtime}");
    let log = runtime["log"].as_str().expect("a log");
    assert!(log.contains("about to fail") && log.contains("the setup broke on purpose"), "{runtime}");
    assert!(runtime["error"].as_str().is_some_and(|error| error.contains("exit status: 3")), "{runtime}");
}

#[tokio::test]
async fn an_apt_package_is_installed_into_the_runtime_and_usable_in_a_session() {
    if !running_as_root() {
        return;
    }
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).args(["--sandbox-isolation", "jail"]).start().await;
    let agent = deploy(&control, &manifest("sandbox:\n  packages:\n    apt: [hello]\n"), &[]).await;
    let runtime = built(&control, &agent).await;
    assert_eq!(runtime["status"], "ready", "{runtime}");
    assert!(runtime["log"].as_str().is_some_and(|log| log.contains("Setting up hello")), "{runtime}");
    let session_id = new_session(&control, &agent).await;
    let (message, output) = run_bash(&fake, &control, &session_id, "hello").await;
    assert_eq!(message["status"], "completed", "{message}");
    assert_eq!(output.trim(), "Hello, world!");
}

#[tokio::test]
async fn without_the_jail_a_version_with_a_setup_fails_clearly() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).args(["--sandbox-isolation", "none"]).start().await;
    let agent = deploy(&control, &manifest("sandbox:\n  packages:\n    apt: [hello]\n"), &[]).await;
    let session_id = new_session(&control, &agent).await;
    let (message, _) = run_bash(&fake, &control, &session_id, "hello").await;
    assert_eq!(message["output"]["error"]["type"], "sandbox_setup_failed", "{message}");
    let text = message["output"]["error"]["message"].as_str().expect("an error message");
    assert!(text.contains("--sandbox-isolation none") && text.contains("host"), "{text}");
    assert_eq!(runtime(&control, &agent).await["status"], "pending");
}

#[tokio::test]
async fn a_runtime_version_the_base_does_not_offer_fails_the_build_naming_both() {
    if !running_as_root() {
        return;
    }
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).args(["--sandbox-isolation", "jail"]).start().await;
    let agent = deploy(&control, &manifest("sandbox:\n  runtimes:\n    python: \"2.7\"\n"), &[]).await;
    let runtime = built(&control, &agent).await;
    assert_eq!(runtime["status"], "failed", "{runtime}");
    let log = runtime["log"].as_str().expect("a log");
    assert!(
        log.contains("sandbox.runtimes.python asks for 2.7, but this sandbox base's Debian packages give python 3."),
        "{log}"
    );
}
