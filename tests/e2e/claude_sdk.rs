//! `examples/claude-sdk-runtime`, deployed exactly as it is in the repository, run end to end: the
//! real `dari server` with a local sandbox, the example's FastAPI server under uvicorn, the Claude
//! Agent SDK driving the real Claude Code CLI, and a fake of Anthropic's Messages API
//! (`dari_tests::fake_anthropic`) in place of the model, reached through the operator's
//! `--sandbox-env ANTHROPIC_BASE_URL`.
//!
//! The example's `setup.sh` is not run (`--skip-sandbox-setup`; it would need PyPI and npm in a
//! build jail): the harness installs the same packages once under `<target>/test-deps/claude-sdk`
//! (`dari_tests::claude_sdk`) and the test puts their `bin` directories first on the sandboxes'
//! `PATH`. Where PyPI or npm cannot
//! be reached the test fails, naming the step; `DARI_TEST_SKIP_CLAUDE_SDK=1` skips it instead.
//!
//! The example asks for `sandbox.provider: e2b`; this server has only the local provider and runs
//! it there, saying so in the `ready` event (`detail.requested_provider`).

use dari_tests::claude_sdk::{self, ENV_SKIP_CLAUDE_SDK};
use dari_tests::control::{ControlServer, Engine, deploy_project};
use dari_tests::fake_anthropic::FakeAnthropic;
use reqwest::StatusCode;
use serde_json::json;

use crate::execution::{finished, send, wait_for_event};
use crate::sandbox_secrets::assert_nowhere;

const FIRST_REPLY: &str = "I will remember abc123.";
const SECOND_REPLY: &str = "You asked me to remember abc123.";

#[tokio::test]
async fn the_claude_sdk_example_runs_unchanged_against_a_fake_model_endpoint() {
    let tools = match tokio::task::spawn_blocking(claude_sdk::prepare).await.expect("the install task") {
        Ok(tools) => tools,
        Err(error) if claude_sdk::skip_allowed() => {
            eprintln!("skipping the Claude Agent SDK example ({ENV_SKIP_CLAUDE_SDK}=1): {error}");
            return;
        }
        Err(error) => panic!(
            "could not install the Claude Agent SDK example's dependencies: {error}\n\
             (where PyPI and npm are unreachable, set {ENV_SKIP_CLAUDE_SDK}=1 to skip this test)"
        ),
    };
    let fake = FakeAnthropic::start().await;
    fake.reply(FIRST_REPLY);
    fake.reply(SECOND_REPLY);
    let sandbox_env = [
        format!("PATH={}", tools.path()),
        format!("ANTHROPIC_BASE_URL={}", fake.url),
        // Claude Code calls nothing but the model with these.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1".to_owned(),
        "DISABLE_TELEMETRY=1".to_owned(),
        "DISABLE_AUTOUPDATER=1".to_owned(),
        "DISABLE_ERROR_REPORTING=1".to_owned(),
    ];
    // The example's packages are installed on the host, under target/, which a jail does not
    // show: the sandbox runs unjailed (a prepared runtime would install them in the sandbox).
    let control = ControlServer::builder(Engine::Sqlite)
        .workers(4)
        .args(["--sandbox-isolation", "none", "--skip-sandbox-setup"])
        .args(sandbox_env.iter().flat_map(|pair| ["--sandbox-env".to_owned(), pair.clone()]))
        .start()
        .await;
    let agent = deploy_project(&control, &dari_tests::workspace_root().join("examples/claude-sdk-runtime")).await;
    let api_key = format!("sk-test-{}", hex_random());
    let body = json!({"secrets": {"ANTHROPIC_API_KEY": api_key}});
    let (status, session) = control.post(&format!("/v1/agents/{}/sessions", agent.agent_id), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let session_id = session["id"].as_str().expect("a session id").to_owned();

    let first = send(&control, &session_id, "Remember this value: abc123.").await;
    let first = finished(&control, &session_id, &first).await;
    assert_eq!(first["status"], "completed", "{first}\nfake saw: {:#?}\n{}", fake.requests(), control.log());
    assert_eq!(first["output"]["parts"][0]["text"], FIRST_REPLY, "{first}");

    let second = send(&control, &session_id, "What value did I ask you to remember?").await;
    let second = finished(&control, &session_id, &second).await;
    assert_eq!(second["status"], "completed", "{second}\nfake saw: {:#?}", fake.requests());
    assert_eq!(second["output"]["parts"][0]["text"], SECOND_REPLY, "{second}");

    // One model call per turn, each with the session's secret as the API key.
    let calls = fake.message_requests();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    for call in &calls {
        assert_eq!(call.header("x-api-key"), Some(api_key.as_str()), "the secret reached Claude Code");
        assert_eq!(call.body["stream"], true);
    }
    let unfaked: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|request| request.path().starts_with("/v1/") && request.path() != "/v1/messages")
        .collect();
    assert!(unfaked.is_empty(), "Claude Code called more than the Messages API: {unfaked:#?}");

    // The second turn resumed the first's Claude session (the runtime kept its id in `state`):
    // Claude Code sent the first exchange back, and both calls name the same session.
    let texts = calls[1].message_texts();
    let user_first = texts.iter().position(|(role, text)| role == "user" && text == "Remember this value: abc123.");
    let assistant_first = texts.iter().position(|(role, text)| role == "assistant" && text == FIRST_REPLY);
    let user_second =
        texts.iter().position(|(role, text)| role == "user" && text == "What value did I ask you to remember?");
    assert!(
        matches!((user_first, assistant_first, user_second), (Some(a), Some(b), Some(c)) if a < b && b < c),
        "the second call carries the first exchange, in order: {texts:#?}"
    );
    let claude_session =
        |call: &dari_tests::fake_anthropic::RecordedRequest| call.header("x-claude-code-session-id").map(str::to_owned);
    assert!(claude_session(&calls[0]).is_some(), "{:#?}", calls[0].headers);
    assert_eq!(claude_session(&calls[0]), claude_session(&calls[1]), "one Claude session across both turns");

    // The example asks for e2b; it ran on the local provider, which the ready event says.
    let ready = wait_for_event(&control, &session_id, |event| {
        event["type"] == "sandbox.status_changed" && event["data"]["status"] == "ready"
    })
    .await;
    assert_eq!(ready["data"]["provider"], "local", "{ready}");
    assert_eq!(ready["data"]["detail"]["requested_provider"], "e2b", "{ready}");

    assert_nowhere(&control, &[&session_id], &[&api_key]).await;
    let unexpected = control.unexpected_warnings(&[]);
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

fn hex_random() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("random bytes");
    hex::encode(bytes)
}

#[tokio::test]
async fn the_fake_anthropic_api_answers_streamed_and_whole_and_records_requests() {
    let fake = FakeAnthropic::start().await;
    fake.reply("streamed");
    fake.reply("whole");
    let http = reqwest::Client::new();
    let ask = |stream: bool| {
        http.post(format!("{}/v1/messages?beta=true", fake.url)).header("x-api-key", "sk-test-fake").json(&json!({
            "model": "claude-sonnet-4-5", "max_tokens": 10, "stream": stream,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        }))
    };
    let streamed = ask(true).send().await.expect("the fake answers");
    assert_eq!(streamed.headers()["content-type"], "text/event-stream");
    let body = streamed.text().await.expect("the stream");
    let names: Vec<&str> = body.lines().filter_map(|line| line.strip_prefix("event: ")).collect();
    assert_eq!(names[..3], ["message_start", "ping", "content_block_start"], "{body}");
    assert_eq!(names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"], "{body}");
    // The text comes in fragments, as a model streams it.
    let text: String = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str::<serde_json::Value>(data).expect("JSON data"))
        .filter(|data| data["delta"]["type"] == "text_delta")
        .map(|data| data["delta"]["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(text, "streamed", "{body}");
    assert!(body.contains(r#""stop_reason":"end_turn""#), "{body}");

    let whole: serde_json::Value = ask(false).send().await.expect("the fake answers").json().await.expect("JSON");
    assert_eq!(whole["content"][0]["text"], "whole", "{whole}");
    assert_eq!(whole["stop_reason"], "end_turn");
    let counted = http.post(format!("{}/v1/messages/count_tokens", fake.url)).json(&json!({})).send().await;
    assert!(counted.expect("the fake answers").status().is_success());

    let calls = fake.message_requests();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].uri, "/v1/messages?beta=true");
    assert_eq!(calls[0].header("X-Api-Key"), Some("sk-test-fake"));
    assert_eq!(calls[1].message_texts(), [("user".to_owned(), "hi".to_owned())]);
    assert_eq!(fake.requests().len(), 3, "count_tokens is recorded too");
}
