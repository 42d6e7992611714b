//! What a runtime's environment holds: the version's declared `sandbox.secrets` (a session's own
//! secret over the organization's credential of the same name, nothing undeclared), a clear
//! failure for a secret found nowhere, and the operator's `--sandbox-env` under the manifest's
//! `sandbox.env`. The test runtime answers `getenv NAME` with a digest of the value, so that
//! the ledger never holds a secret even here, and the tests check that it never does.

use dari_tests::control::{ControlServer, DeployedAgent, Engine, deploy_project};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::execution::{finished, send};

const SESSION_API_TOKEN: &str = "session-api-token-5f1c";
const CREDENTIAL_API_TOKEN: &str = "credential-api-token-9a2e";
const CREDENTIAL_SECOND_TOKEN: &str = "credential-second-token-77d0";
const UNDECLARED_TOKEN: &str = "undeclared-token-c3b4";

/// `tests/fixtures/test-runtime` with `sandbox.secrets: [API_TOKEN, SECOND_TOKEN]` added.
async fn deploy_runtime_with_secrets(control: &ControlServer) -> DeployedAgent {
    let project = tempfile::tempdir().expect("a project directory");
    let fixture = dari_tests::workspace_root().join("tests/fixtures/test-runtime");
    for file in ["server.py", "prompts/system.md"] {
        let target = project.path().join(file);
        std::fs::create_dir_all(target.parent().expect("a parent")).expect("create directories");
        std::fs::copy(fixture.join(file), target).expect("copy the fixture");
    }
    let manifest = std::fs::read_to_string(fixture.join("dari.yml")).expect("read the fixture's dari.yml");
    let manifest = manifest.replace("sandbox:\n", "sandbox:\n  secrets: [API_TOKEN, SECOND_TOKEN]\n");
    assert!(manifest.contains("secrets: [API_TOKEN"), "the fixture's dari.yml has a sandbox section");
    std::fs::write(project.path().join("dari.yml"), manifest).expect("write dari.yml");
    deploy_project(control, project.path()).await
}

async fn session_with(control: &ControlServer, agent: &DeployedAgent, body: Value) -> String {
    let (status, session) = control.post(&format!("/v1/agents/{}/sessions", agent.agent_id), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    session["id"].as_str().expect("a session id").to_owned()
}

async fn put_credential(control: &ControlServer, org_id: &str, name: &str, value: &str) {
    let path = format!("/v1/organizations/{org_id}/credentials/{name}");
    let (status, body) = control.put(&path, &json!({"value": value})).await;
    assert!(status.is_success(), "{status} {body}");
}

/// What the runtime sees of `name`: the test runtime's answer to `getenv NAME`.
async fn runtime_getenv(control: &ControlServer, session_id: &str, name: &str) -> String {
    let message = send(control, session_id, &format!("getenv {name}")).await;
    let message = finished(control, session_id, &message).await;
    assert_eq!(message["status"], "completed", "{message}");
    message["output"]["parts"][0]["text"].as_str().expect("a text part").to_owned()
}

fn holds(name: &str, value: &str) -> String {
    format!("{name} sha256 {}", hex::encode(Sha256::digest(value.as_bytes())))
}

/// Panics if the session's ledger, the server's log or a sandbox's log holds any of `values`.
pub(crate) async fn assert_nowhere(control: &ControlServer, session_ids: &[&str], values: &[&str]) {
    let mut places = vec![("the server log".to_owned(), control.log())];
    for session_id in session_ids {
        let (status, page) = control.get(&format!("/v1/sessions/{session_id}/events?limit=500")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        places.push((format!("the ledger of {session_id}"), page.to_string()));
    }
    let logs = control.data_dir.path().join("sandboxes/logs");
    for entry in std::fs::read_dir(&logs).expect("the sandboxes' logs").flatten() {
        places.push((entry.path().display().to_string(), std::fs::read_to_string(entry.path()).unwrap_or_default()));
    }
    for (place, text) in &places {
        for value in values {
            assert!(!text.contains(value), "{place} holds the secret value {value}");
        }
    }
    for value in values {
        assert_eq!(control.data_files_containing(value), Vec::<std::path::PathBuf>::new(), "{value} is sealed at rest");
    }
}

#[tokio::test]
async fn declared_secrets_reach_the_runtime_the_sessions_over_the_credentials() {
    for engine in Engine::available() {
        let control = ControlServer::builder(engine).workers(4).start().await;
        let org_id = control.org_id().await;
        put_credential(&control, &org_id, "API_TOKEN", CREDENTIAL_API_TOKEN).await;
        put_credential(&control, &org_id, "SECOND_TOKEN", CREDENTIAL_SECOND_TOKEN).await;
        let agent = deploy_runtime_with_secrets(&control).await;

        // The session's own secret overrides the credential; SECOND_TOKEN comes from the
        // credentials; a name the version does not declare stays out of the sandbox.
        let secrets = json!({"API_TOKEN": SESSION_API_TOKEN, "UNDECLARED_TOKEN": UNDECLARED_TOKEN});
        let with_secrets = session_with(&control, &agent, json!({"secrets": secrets})).await;
        assert_eq!(runtime_getenv(&control, &with_secrets, "API_TOKEN").await, holds("API_TOKEN", SESSION_API_TOKEN));
        assert_eq!(
            runtime_getenv(&control, &with_secrets, "SECOND_TOKEN").await,
            holds("SECOND_TOKEN", CREDENTIAL_SECOND_TOKEN)
        );
        assert_eq!(runtime_getenv(&control, &with_secrets, "UNDECLARED_TOKEN").await, "UNDECLARED_TOKEN unset");

        // Without secrets of its own, a session gets the stored credentials.
        let plain = session_with(&control, &agent, json!({})).await;
        assert_eq!(runtime_getenv(&control, &plain, "API_TOKEN").await, holds("API_TOKEN", CREDENTIAL_API_TOKEN));

        let values = [SESSION_API_TOKEN, CREDENTIAL_API_TOKEN, CREDENTIAL_SECOND_TOKEN, UNDECLARED_TOKEN];
        assert_nowhere(&control, &[&with_secrets, &plain], &values).await;
        let unexpected = control.unexpected_warnings(&[]);
        assert!(unexpected.is_empty(), "{unexpected:#?}");
    }
}

#[tokio::test]
async fn a_declared_secret_found_nowhere_fails_the_message_naming_it() {
    let control = ControlServer::builder(Engine::Sqlite).workers(4).start().await;
    let org_id = control.org_id().await;
    put_credential(&control, &org_id, "API_TOKEN", CREDENTIAL_API_TOKEN).await;
    let agent = deploy_runtime_with_secrets(&control).await;
    let session_id = session_with(&control, &agent, json!({"secrets": {"API_TOKEN": SESSION_API_TOKEN}})).await;

    let message = send(&control, &session_id, "hello").await;
    let message = finished(&control, &session_id, &message).await;
    assert_eq!(message["status"], "failed", "{message}");
    let error = &message["output"]["error"];
    assert_eq!(error["type"], "sandbox_setup_failed", "{error}");
    assert_eq!(error["details"]["missing_secrets"], json!(["SECOND_TOKEN"]), "only the missing name: {error}");
    let text = error["message"].as_str().expect("a message");
    assert!(text.contains("SECOND_TOKEN"), "{text}");
    assert!(text.contains("dari credentials add SECOND_TOKEN"), "says how to store it: {text}");
    assert!(text.contains("`secrets`"), "says how to give it to the session: {text}");
    assert!(!text.contains("API_TOKEN,"), "names only what is missing: {text}");

    // Once the credential is stored, the session's next message runs.
    put_credential(&control, &org_id, "SECOND_TOKEN", CREDENTIAL_SECOND_TOKEN).await;
    assert_eq!(
        runtime_getenv(&control, &session_id, "SECOND_TOKEN").await,
        holds("SECOND_TOKEN", CREDENTIAL_SECOND_TOKEN)
    );
    assert_nowhere(&control, &[&session_id], &[SESSION_API_TOKEN, CREDENTIAL_API_TOKEN, CREDENTIAL_SECOND_TOKEN]).await;
}

#[tokio::test]
async fn the_operators_sandbox_env_reaches_runtimes_under_the_manifests_env() {
    let control = ControlServer::builder(Engine::Sqlite)
        .workers(4)
        .args(["--sandbox-env", "OPERATOR_NOTE=from the operator", "--sandbox-env", "GREETING=from the operator"])
        .start()
        .await;
    let agent = deploy_project(&control, &dari_tests::workspace_root().join("tests/fixtures/test-runtime")).await;
    let session_id = session_with(&control, &agent, json!({})).await;
    assert_eq!(
        runtime_getenv(&control, &session_id, "OPERATOR_NOTE").await,
        holds("OPERATOR_NOTE", "from the operator")
    );
    let greeting = send(&control, &session_id, "env").await;
    let greeting = finished(&control, &session_id, &greeting).await;
    assert_eq!(greeting["output"]["parts"][0]["text"], "hello from sandbox.env", "the manifest's sandbox.env wins");
}
