//! The providers as the loop uses them: Anthropic's format with a stored credential, OpenRouter
//! with the session's own key, retries by `llm.retry_policy` on what may pass, and a clear
//! failure with the provider's own words on what will not.

use dari_tests::control::Engine;
use dari_tests::fake_llm::{FakeLlm, Reply, ScriptedToolCall, ScriptedUsage, WireFormat};
use reqwest::StatusCode;
use serde_json::json;

use super::{PLATFORM_KEY, deploy, events, manifest, of_type, server};
use crate::execution::{finished, new_session, send};

const CREDENTIAL: &str = "sk-ant-stored-credential-9d2e";
const SESSION_KEY: &str = "sk-or-session-key-41aa";

#[tokio::test]
async fn anthropic_with_a_stored_credential_runs_tools_and_the_key_stays_out_of_the_sandbox() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let org_id = control.org_id().await;
    let (status, body) = control
        .put(&format!("/v1/organizations/{org_id}/credentials/ANTHROPIC_KEY"), &json!({"value": CREDENTIAL}))
        .await;
    assert!(status.is_success(), "{status} {body}");
    let manifest = "name: pi-claude\nharness: pi\ninstructions:\n  system: prompts/system.md\nllm:\n  model: anthropic/claude-test\n  api_key_secret: ANTHROPIC_KEY\n";
    let agent = deploy(&control, manifest, &[]).await;
    let session_id = new_session(&control, &agent).await;
    fake.push(Reply::tool_calls([ScriptedToolCall::new(
        "toolu_1",
        "bash",
        &json!({"command": "env; echo from-bash"}),
    )]));
    fake.push(Reply::text("The command ran.").with_usage(ScriptedUsage {
        input_tokens: 400,
        output_tokens: 30,
        cache_read_tokens: 50,
        cache_write_tokens: 0,
        cost_usd: None,
    }));
    let message_id = send(&control, &session_id, "Run a command").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "completed", "{message}");
    assert_eq!(message["output"]["usage"]["cache_read_tokens"], 50, "{message}");

    let requests = fake.requests();
    assert_eq!(requests[0].format, Some(WireFormat::Anthropic));
    assert_eq!(requests[0].header("x-api-key"), Some(CREDENTIAL));
    assert_eq!(requests[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(requests[0].model(), Some("claude-test"));
    let output = requests[1].tool_result_texts().join("\n");
    assert!(output.contains("from-bash"), "{output}");
    assert!(
        !output.contains(CREDENTIAL) && !output.contains(PLATFORM_KEY),
        "a model key reached the sandbox: {output}"
    );
    let ledger = serde_json::to_string(&events(&control, &session_id).await).expect("JSON");
    assert!(!ledger.contains(CREDENTIAL));
    assert!(!control.log().contains(CREDENTIAL));
}

#[tokio::test]
async fn openrouter_takes_the_sessions_own_key_and_reports_cost() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let manifest = "name: pi-router\nharness: pi\ninstructions:\n  system: prompts/system.md\nllm:\n  model: meta-llama/llama-test\n";
    let agent = deploy(&control, manifest, &[]).await;
    let (status, session) =
        control.post(&format!("/v1/agents/{}/sessions", agent.agent_id), &json!({"llm_api_key": SESSION_KEY})).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let session_id = session["id"].as_str().expect("an id").to_owned();
    fake.push(Reply::text("routed").with_usage(ScriptedUsage { cost_usd: Some(0.0025), ..ScriptedUsage::default() }));
    let message_id = send(&control, &session_id, "hi").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "completed", "{message}");
    assert_eq!(message["output"]["usage"]["cost_usd"], 0.0025, "{message}");
    let request = &fake.requests()[0];
    assert_eq!(request.header("authorization"), Some(format!("Bearer {SESSION_KEY}").as_str()));
    assert_eq!(request.model(), Some("meta-llama/llama-test"), "OpenRouter gets the model as written");
}

#[tokio::test]
async fn rate_limits_and_cut_streams_are_retried_by_the_retry_policy() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let policy =
        "  retry_policy:\n    maximum_attempts: 3\n    initial_interval_seconds: 1\n    maximum_interval_seconds: 2\n";
    let agent = deploy(&control, &manifest(policy), &[]).await;
    let session_id = new_session(&control, &agent).await;
    fake.push(Reply::rate_limited("1"));
    fake.push(Reply::CutMidStream);
    fake.push(Reply::text("third time lucky"));
    let message_id = send(&control, &session_id, "hello").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "completed", "{message}");
    assert_eq!(message["attempt"], 3, "{message}");
    assert_eq!(message["output"]["parts"][0]["text"], "third time lucky");
    let events = events(&control, &session_id).await;
    let retries = of_type(&events, "assistant.retry_scheduled");
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert_eq!(retries[0]["data"]["error"]["type"], "model_rate_limited");
    assert!(retries[0]["data"]["delay_ms"].as_u64().expect("a delay") >= 1000, "retry-after is honoured");
    assert_eq!(retries[1]["data"]["error"]["type"], "model_connection");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn refusals_and_malformed_streams_fail_at_once_with_the_providers_words() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let agent = deploy(&control, &manifest(""), &[]).await;

    let session_id = new_session(&control, &agent).await;
    fake.push(Reply::status(400, "The model `gpt-test` does not exist"));
    let message_id = send(&control, &session_id, "hello").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "failed", "{message}");
    let error = &message["output"]["error"];
    assert_eq!(error["type"], "model_rejected", "{message}");
    assert!(error["message"].as_str().expect("a message").contains("does not exist"), "{message}");
    assert_eq!(error["details"]["status"], 400, "{message}");
    assert_eq!(error["details"]["model"], "openai/gpt-test", "{message}");
    assert_eq!(fake.requests().len(), 1, "a 400 is not retried");

    let session_id = new_session(&control, &agent).await;
    fake.push(Reply::Malformed);
    let message_id = send(&control, &session_id, "hello").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "failed", "{message}");
    assert_eq!(message["output"]["error"]["type"], "model_bad_response", "{message}");
    assert_eq!(fake.requests().len(), 2, "a malformed answer is not retried");

    // An agent's own endpoint never gets the platform's key.
    let manifest = format!(
        "name: pi-own-endpoint\nharness: pi\ninstructions:\n  system: prompts/system.md\nllm:\n  model: local-model\n  base_url: {}\n",
        fake.openai_base_url()
    );
    let agent = deploy(&control, &manifest, &[]).await;
    let session_id = new_session(&control, &agent).await;
    let message_id = send(&control, &session_id, "hello").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["output"]["error"]["type"], "llm_key_missing", "{message}");
    assert_eq!(fake.requests().len(), 2, "nothing was sent to the agent's endpoint");

    // Without any key, the message says how to give one.
    let manifest = "name: pi-nokey\nharness: pi\ninstructions:\n  system: prompts/system.md\nllm:\n  model: anthropic/claude-test\n";
    let agent = deploy(&control, manifest, &[]).await;
    let session_id = new_session(&control, &agent).await;
    let message_id = send(&control, &session_id, "hello").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["output"]["error"]["type"], "llm_key_missing", "{message}");
    assert!(message["output"]["error"]["message"].as_str().expect("text").contains("ANTHROPIC_API_KEY"), "{message}");
}

#[tokio::test]
async fn a_session_picks_its_model_from_llm_options_with_llm_id() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).env("ANTHROPIC_API_KEY", "sk-ant-platform").start().await;
    let manifest = "name: pi-options\nharness: pi\ninstructions:\n  system: prompts/system.md\nllm:\n  default: fast\n  options:\n    fast:\n      model: openai/gpt-fast\n    careful:\n      model: anthropic/claude-careful\n";
    let agent = deploy(&control, manifest, &[]).await;
    fake.push(Reply::text("fast answer"));
    fake.push(Reply::text("careful answer"));
    for (llm_id, model, format) in
        [(None, "gpt-fast", WireFormat::OpenAi), (Some("careful"), "claude-careful", WireFormat::Anthropic)]
    {
        let body = llm_id.map_or_else(|| json!({}), |llm_id| json!({"llm_id": llm_id}));
        let (status, session) = control.post(&format!("/v1/agents/{}/sessions", agent.agent_id), &body).await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        let session_id = session["id"].as_str().expect("an id").to_owned();
        let message_id = send(&control, &session_id, "hi").await;
        assert_eq!(finished(&control, &session_id, &message_id).await["status"], "completed");
        let request = fake.requests().pop().expect("a request");
        assert_eq!((request.model(), request.format), (Some(model), Some(format)));
    }
}

#[tokio::test]
async fn sandbox_env_and_declared_secrets_reach_the_tools_and_nothing_else() {
    const TOKEN: &str = "tok-declared-7c1e";
    const UNDECLARED: &str = "tok-undeclared-22b0";
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).start().await;
    let org_id = control.org_id().await;
    for (name, value) in [("API_TOKEN", TOKEN), ("OTHER_TOKEN", UNDECLARED)] {
        let (status, body) =
            control.put(&format!("/v1/organizations/{org_id}/credentials/{name}"), &json!({"value": value})).await;
        assert!(status.is_success(), "{status} {body}");
    }
    let sandbox = "sandbox:\n  env:\n    GREETING: hello-from-env\n  secrets: [API_TOKEN]\n";
    let agent = deploy(&control, &manifest(sandbox), &[]).await;
    let session_id = new_session(&control, &agent).await;
    // The command names the secret without holding its value (the arguments are in the ledger).
    let command = r#"echo "greeting=$GREETING"; case "$API_TOKEN" in tok-declared-????) echo token-ok;; esac; echo "other=${OTHER_TOKEN:-unset}""#;
    fake.push(Reply::tool_calls([ScriptedToolCall::new("call_env", "bash", &json!({"command": command}))]));
    fake.push(Reply::text("checked"));
    let message_id = send(&control, &session_id, "check the environment").await;
    let message = finished(&control, &session_id, &message_id).await;
    assert_eq!(message["status"], "completed", "{message}");
    let output = fake.requests()[1].tool_result_texts().join("\n");
    assert!(output.contains("greeting=hello-from-env"), "{output}");
    assert!(output.contains("token-ok"), "the declared secret is in the sandbox: {output}");
    assert!(output.contains("other=unset"), "an undeclared credential is not: {output}");
    let ledger = serde_json::to_string(&events(&control, &session_id).await).expect("JSON");
    assert!(
        !ledger.contains(TOKEN) && !control.log().contains(TOKEN),
        "the secret's value stays out of the ledger and log"
    );
}
