//! The jail as a session meets it: the real `dari` server runs the managed pi harness against
//! the fake model, whose scripted `bash` calls try to get out. The link runs over the Unix socket
//! bound into the jail, so every test here also shows that a sandbox without a network reaches
//! control.

use dari_tests::control::{ControlServer, Engine};
use dari_tests::fake_llm::FakeLlm;
use serde_json::json;

use super::{bash_in_session, running_as_root};
use crate::execution::{new_session, wait_for_event};
use crate::pi::{deploy, manifest, server};

/// Runs one `bash` call in the session and returns the tool result's text as the model saw it.
async fn run_bash(fake: &FakeLlm, control: &ControlServer, session_id: &str, command: &str) -> String {
    let (message, output) = bash_in_session(fake, control, session_id, command).await;
    assert_eq!(message["status"], "completed", "{message}\n{}", control.log());
    output
}

#[tokio::test]
async fn a_session_without_internet_access_reaches_control_and_nothing_else() {
    if !running_as_root() {
        return;
    }
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).args(["--sandbox-isolation", "jail"]).start().await;
    let agent = deploy(&control, &manifest(""), &[]).await;
    let session_id = new_session(&control, &agent).await;
    let port = control.url.rsplit(':').next().expect("the server's port").to_owned();
    let data_dir = control.data_dir.path().display().to_string();
    let command = format!(
        "hostname; ls /; (echo > /dev/tcp/127.0.0.1/{port}) 2>&1 | head -1; cat {data_dir}/master.key 2>&1 | head -1; \
         n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo processes=$n"
    );
    let output = run_bash(&fake, &control, &session_id, &command).await;
    assert!(output.starts_with("sbx_"), "the hostname is the sandbox's id: {output}");
    assert!(output.contains("Connection refused"), "control's TCP port is not reachable: {output}");
    assert!(output.contains("No such file or directory"), "control's data directory is not there: {output}");
    let processes: usize =
        output.lines().find_map(|line| line.strip_prefix("processes=")).and_then(|n| n.parse().ok()).expect("a count");
    assert!(processes < 10, "the jail's init, daemon and this command, not the host's: {output}");

    // The link's socket is in reach, but it serves a daemon's routes only, none of the public API.
    let probe = r#"python3 - <<'PY'
import http.client, socket
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/run/dari/link/control.sock")
for path in ["/healthz", "/v1/openapi.json", "/v1/organizations", "/internal/sandboxes/sbx_x/bundle"]:
    connection = Unix("localhost")
    connection.request("GET", path)
    print(path, connection.getresponse().status)
PY"#;
    let output = run_bash(&fake, &control, &session_id, probe).await;
    for public in ["/healthz 404", "/v1/openapi.json 404", "/v1/organizations 404"] {
        assert!(output.contains(public), "{public}: {output}");
    }
    assert!(output.contains("/internal/sandboxes/sbx_x/bundle 401"), "a daemon's route, without a token: {output}");

    // With internet access, the host's network (and so its loopback) is there.
    let (status, session) =
        control.post(&format!("/v1/agents/{}/sessions", agent.agent_id), &json!({"internet_access": true})).await;
    assert!(status.is_success(), "{session}");
    let online = session["id"].as_str().expect("a session id");
    let command = format!("(echo > /dev/tcp/127.0.0.1/{port}) && echo reached-control-port");
    let output = run_bash(&fake, &control, online, &command).await;
    assert!(output.contains("reached-control-port"), "{output}");
}

#[tokio::test]
async fn a_command_past_memory_mb_is_told_it_ran_out_of_memory_and_the_session_goes_on() {
    if !running_as_root() {
        return;
    }
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).args(["--sandbox-isolation", "jail"]).start().await;
    let agent = deploy(&control, &manifest("sandbox:\n  resources:\n    memory_mb: 96\n"), &[]).await;
    let session_id = new_session(&control, &agent).await;
    let command = "python3 -c 'block = bytearray(512 * 1024 * 1024); print(len(block))'";
    let output = run_bash(&fake, &control, &session_id, command).await;
    assert!(output.contains("ran out of memory"), "{output}");
    assert!(output.contains("96 MiB") && output.contains("sandbox.resources.memory_mb"), "{output}");

    let event = wait_for_event(&control, &session_id, |event| event["type"] == "sandbox.out_of_memory").await;
    assert_eq!(event["data"]["memory_mb"], 96, "{event}");
    assert!(event["data"]["oom_kills"].as_u64().is_some_and(|kills| kills >= 1), "{event}");

    let output = run_bash(&fake, &control, &session_id, "echo still-here").await;
    assert_eq!(output.trim(), "still-here", "the sandbox survived its command's death");
}
