//! The `e2b` provider against a fake of E2B that speaks its REST API and envd's process API and
//! runs the real `sandboxd` (`tests/src/fake_e2b.rs`): a session's sandbox is created from the
//! template with its metadata, lifetime and environment, its daemon started through envd with
//! the token, killed when the sandbox is torn down, and a refused creation fails the message
//! with E2B's status. The API key reaches E2B only, never the log.

use dari_control::sandboxes::e2b::{SANDBOXD_PATH, WORKSPACE};
use dari_tests::binaries::dari_with_env;
use dari_tests::control::{ControlServer, DeployedAgent, Engine, deploy_project};
use dari_tests::fake_e2b::{FAKE_E2B_API_KEY, FakeE2b, RecordedE2bRequest};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::execution::{finished, new_session, send, wait_for_event};

const TEMPLATE: &str = "dari-test-template";

/// A server whose sandboxes are made by `e2b`, with `api_key` in E2B_API_KEY and `extra` flags.
async fn control_on(e2b: &FakeE2b, api_key: &str, extra: &[&str]) -> ControlServer {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port();
    let link_url = format!("ws://127.0.0.1:{port}");
    ControlServer::builder(Engine::Sqlite)
        .workers(4)
        .listen(&format!("127.0.0.1:{port}"))
        .args(["--sandbox-provider", "e2b", "--link-url", &link_url, "--e2b-template", TEMPLATE])
        .args(["--e2b-api-url", &e2b.url, "--e2b-sandbox-url", &e2b.url, "--e2b-timeout", "10m"])
        .args(extra)
        .env("E2B_API_KEY", api_key)
        .start()
        .await
}

async fn deploy_test_runtime(control: &ControlServer) -> DeployedAgent {
    deploy_project(control, &dari_tests::workspace_root().join("tests/fixtures/test-runtime")).await
}

fn reply(message: &Value) -> &str {
    assert_eq!(message["status"], "completed", "{message}");
    message["output"]["parts"][0]["text"].as_str().expect("a text part")
}

fn header<'a>(request: &'a RecordedE2bRequest, name: &str) -> Option<&'a str> {
    request.headers.get(name).map(String::as_str)
}

#[tokio::test]
async fn a_session_runs_in_an_e2b_sandbox_that_is_killed_when_torn_down() {
    let e2b = FakeE2b::start().await;
    let operator_env = ["--sandbox-env", "GREETING=from the operator", "--sandbox-env", "OPERATOR_NOTE=noted"];
    let control =
        control_on(&e2b, FAKE_E2B_API_KEY, &[&["--sandbox-idle-timeout", "1s"][..], &operator_env].concat()).await;
    let org_id = control.org_id().await;
    let agent = deploy_test_runtime(&control).await;
    let session_id = new_session(&control, &agent).await;

    let greeting = send(&control, &session_id, "env").await;
    assert_eq!(reply(&finished(&control, &session_id, &greeting).await), "hello from sandbox.env");
    let wrote = send(&control, &session_id, "write memo.txt the answer is 42").await;
    assert_eq!(reply(&finished(&control, &session_id, &wrote).await), "wrote memo.txt");

    // The sandbox was made from the template, with its metadata, lifetime and own environment
    // (the operator's --sandbox-env under the manifest's); the daemon's token went to envd only.
    let creations = e2b.requests_to(Method::POST, "/sandboxes");
    let create = creations.first().expect("a sandbox was created");
    assert_eq!(header(create, "x-api-key"), Some(FAKE_E2B_API_KEY));
    assert_eq!(create.status, StatusCode::CREATED);
    let body = &create.body;
    assert_eq!(body["templateID"], TEMPLATE, "{body}");
    assert_eq!(body["timeout"], 600, "--e2b-timeout in seconds: {body}");
    assert_eq!(body["secure"], true, "envd wants the access token: {body}");
    let own_env = json!({"GREETING": "hello from sandbox.env", "OPERATOR_NOTE": "noted"});
    assert_eq!(body["envVars"], own_env, "the manifest's sandbox.env over the operator's: {body}");
    let sandbox_id = body["metadata"]["dari_sandbox_id"].as_str().expect("the Dari sandbox id");
    assert!(sandbox_id.starts_with("sbx"), "{body}");
    assert_eq!(body["metadata"]["dari_session_id"], session_id.as_str(), "{body}");
    assert_eq!(body["metadata"]["dari_org_id"], org_id.as_str(), "{body}");

    let starts = e2b.requests_to(Method::POST, "/process.Process/Start");
    let start = starts.first().expect("the daemon was started through envd");
    assert_eq!(start.status, StatusCode::OK);
    assert_eq!(header(start, "x-api-key"), None, "envd never sees the API key");
    assert_eq!(header(start, "authorization"), Some("Basic cm9vdDo="), "as root");
    let process = &start.body["process"];
    assert_eq!(
        (&process["cmd"], &process["args"], &process["cwd"]),
        (&json!(SANDBOXD_PATH), &json!(["run"]), &json!(WORKSPACE))
    );
    let envs = &process["envs"];
    assert_eq!(envs["SANDBOXD_SANDBOX_ID"], sandbox_id, "{envs}");
    assert_eq!((&envs["SANDBOXD_WORKSPACE"], &envs["HOME"]), (&json!(WORKSPACE), &json!(WORKSPACE)));
    assert!(envs["SANDBOXD_CONTROL_URL"].as_str().is_some_and(|url| url.starts_with("ws://127.0.0.1:")), "{envs}");
    assert!(envs["SANDBOXD_TOKEN"].as_str().is_some_and(|token| token.starts_with("sbt_")), "{envs}");

    // Idle, the sandbox is archived and torn down: E2B is told to kill it.
    let terminated = wait_for_event(&control, &session_id, |event| {
        event["type"] == "sandbox.status_changed" && event["data"]["status"] == "terminated"
    })
    .await;
    assert_eq!(terminated["data"]["reason"], "idle", "{terminated}");
    let killed = format!("/sandboxes/{}", header(start, "e2b-sandbox-id").expect("envd's call names its sandbox"));
    let deleted = e2b.wait_for(|requests| requests.iter().any(|request| request.path == killed)).await;
    let delete = deleted.iter().find(|request| request.path == killed).expect("the kill");
    assert_eq!((&delete.method, delete.status), (&Method::DELETE, StatusCode::NO_CONTENT));
    assert_eq!(header(delete, "x-api-key"), Some(FAKE_E2B_API_KEY));
    assert!(e2b.live_sandboxes().is_empty(), "{:?}", e2b.live_sandboxes());

    // The next message gets a new E2B sandbox, its workspace restored from the archive.
    let read = send(&control, &session_id, "read memo.txt").await;
    assert_eq!(reply(&finished(&control, &session_id, &read).await), "the answer is 42 (turn 2)");
    assert_eq!(e2b.requests_to(Method::POST, "/sandboxes").len(), 2);

    assert!(!control.log().contains(FAKE_E2B_API_KEY), "the API key is in the server's log");
    let unexpected = control.unexpected_warnings(&[]);
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

#[tokio::test]
async fn a_refused_creation_fails_the_message_naming_e2b_and_its_status() {
    let wrong_key = "e2b_0000000000000000000000000000wrong";
    for (api_key, status, said) in [
        (wrong_key, "401 Unauthorized", "Invalid API key"),
        (FAKE_E2B_API_KEY, "500 Internal Server Error", "the cluster is out of capacity"),
    ] {
        let e2b = FakeE2b::start().await;
        if api_key == FAKE_E2B_API_KEY {
            e2b.fail_creations(StatusCode::INTERNAL_SERVER_ERROR, "the cluster is out of capacity");
        }
        let control = control_on(&e2b, api_key, &[]).await;
        let agent = deploy_test_runtime(&control).await;
        let session_id = new_session(&control, &agent).await;

        let message = send(&control, &session_id, "hello").await;
        let message = finished(&control, &session_id, &message).await;
        assert_eq!(message["status"], "failed", "{message}");
        let text = message["output"]["error"]["message"].as_str().expect("an error message");
        assert!(text.contains(&format!("E2B refused to create a sandbox from template \"{TEMPLATE}\"")), "{text}");
        assert!(text.contains(status) && text.contains(said), "{text}");
        assert!(!text.contains(api_key), "{text}");
        assert!(e2b.requests_to(Method::POST, "/process.Process/Start").is_empty(), "no daemon without a sandbox");
        assert!(!control.log().contains(api_key), "the API key is in the server's log");
        let unexpected = control.unexpected_warnings(&["retrying the turn"]);
        assert!(unexpected.is_empty(), "{unexpected:#?}");
    }
}

#[test]
fn the_server_refuses_e2b_without_a_key_or_a_link_url() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let data = data_dir.path().to_str().expect("a UTF-8 path");
    let server = ["server", "--data-dir", data, "--listen", "127.0.0.1:0", "--sandbox-provider", "e2b"];
    let without_key = dari_with_env(&[&server[..], &["--link-url", "wss://dari.example.com"]].concat(), &[]);
    assert!(!without_key.status.success());
    let stderr = String::from_utf8_lossy(&without_key.stderr);
    assert!(stderr.contains("needs the E2B API key in E2B_API_KEY"), "{stderr}");

    let without_link = dari_with_env(&server, &[("E2B_API_KEY", FAKE_E2B_API_KEY.to_owned())]);
    assert!(!without_link.status.success());
    let stderr = String::from_utf8_lossy(&without_link.stderr);
    assert!(stderr.contains("needs --link-url"), "{stderr}");
    assert!(!stderr.contains(FAKE_E2B_API_KEY), "{stderr}");
}
