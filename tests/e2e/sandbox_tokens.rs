//! Sandbox tokens, attacked: a token opens only its own sandbox's internal routes, only while the
//! sandbox is live, and nothing of the public API; an API key opens no internal route.

use dari_tests::control::{ControlServer, Engine, deploy_echo_agent};
use reqwest::StatusCode;

use crate::execution::{finished, new_session, send, wait_for_event};

/// The environment of the `sandboxd` serving `sandbox_id`: where its token is.
fn daemon_token(sandbox_id: &str) -> String {
    let wanted = format!("SANDBOXD_SANDBOX_ID={sandbox_id}");
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let variables: Vec<&[u8]> = environ.split(|byte| *byte == 0).collect();
        if variables.contains(&wanted.as_bytes()) {
            for variable in variables {
                if let Some(token) = variable.strip_prefix(b"SANDBOXD_TOKEN=") {
                    return String::from_utf8_lossy(token).into_owned();
                }
            }
        }
    }
    panic!("no daemon of {sandbox_id} found");
}

async fn get(control: &ControlServer, path: &str, token: Option<&str>) -> StatusCode {
    let mut request = control.http.get(format!("{}{path}", control.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the server answers").status()
}

#[tokio::test]
async fn a_sandbox_token_opens_only_its_own_live_sandbox() {
    let control =
        ControlServer::builder(Engine::Sqlite).workers(4).args(["--sandbox-idle-timeout", "5s"]).start().await;
    let agent = deploy_echo_agent(&control).await;
    let mut sandboxes = Vec::new();
    for _ in 0..2 {
        let session_id = new_session(&control, &agent).await;
        let message = send(&control, &session_id, "hi").await;
        finished(&control, &session_id, &message).await;
        let ready = wait_for_event(&control, &session_id, |event| {
            event["type"] == "sandbox.status_changed" && event["data"]["status"] == "ready"
        })
        .await;
        let sandbox_id = ready["data"]["sandbox_id"].as_str().expect("a sandbox id").to_owned();
        // Read the token at once, well before the idle timeout ends the sandbox.
        let token = daemon_token(&sandbox_id);
        sandboxes.push((session_id, sandbox_id, token));
    }
    let (first_session, first, token) = &sandboxes[0];
    let (_, second, _) = &sandboxes[1];
    assert!(token.starts_with("sbt_"), "{token}");

    assert_eq!(
        get(&control, &format!("/internal/sandboxes/{first}/bundle"), Some(token.as_str())).await,
        StatusCode::OK
    );
    for (path, bearer, why) in [
        (format!("/internal/sandboxes/{second}/bundle"), Some(token.as_str()), "another sandbox's path"),
        (format!("/internal/sandboxes/{second}/workspace"), Some(token.as_str()), "another sandbox's workspace"),
        (format!("/internal/sandboxes/{first}/bundle"), None, "no token"),
        (format!("/internal/sandboxes/{first}/bundle"), Some("sbt_forged"), "a forged token"),
        (format!("/internal/sandboxes/{first}/bundle"), Some(control.api_key.as_str()), "an API key"),
        ("/v1/agents".to_owned(), Some(token.as_str()), "the public API with a sandbox token"),
    ] {
        assert_eq!(get(&control, &path, bearer).await, StatusCode::UNAUTHORIZED, "{why}: {path}");
    }

    // Torn down (idle), the sandbox's token opens nothing any more.
    wait_for_event(&control, first_session, |event| {
        event["type"] == "sandbox.status_changed" && event["data"]["status"] == "terminated"
    })
    .await;
    assert_eq!(
        get(&control, &format!("/internal/sandboxes/{first}/bundle"), Some(token.as_str())).await,
        StatusCode::UNAUTHORIZED,
        "a torn-down sandbox's token is revoked"
    );
    assert!(control.unexpected_warnings(&[]).is_empty(), "{:?}", control.unexpected_warnings(&[]));
}
