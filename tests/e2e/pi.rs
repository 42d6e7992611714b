//! The managed pi harness end to end: the real `dari server` and `sandboxd`, and a fake model
//! provider that speaks OpenAI's and Anthropic's real streaming formats (`tests/src/fake_llm.rs`).
//! Each test writes its agent's project into a temporary directory and deploys it.

mod compaction;
mod durability;
mod example;
mod external_tools;
mod providers;
mod the_loop;

use std::path::Path;

use dari_tests::control::{ControlServer, ControlServerBuilder, DeployedAgent, Engine, deploy_project};
use dari_tests::fake_llm::FakeLlm;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The platform key the server holds for OpenAI (`OPENAI_API_KEY`).
pub(crate) const PLATFORM_KEY: &str = "sk-platform-test-5f1c0d";
/// The agent's instructions, which the system prompt must carry.
pub(crate) const INSTRUCTIONS: &str = "You are the test agent. Answer briefly.";

/// A server whose model providers are all the fake.
pub(crate) fn server(engine: Engine, fake: &FakeLlm) -> ControlServerBuilder {
    ControlServer::builder(engine).workers(4).env("OPENAI_API_KEY", PLATFORM_KEY).args([
        "--openai-base-url".to_owned(),
        fake.openai_base_url(),
        "--anthropic-base-url".to_owned(),
        fake.anthropic_base_url(),
        "--openrouter-base-url".to_owned(),
        fake.openai_base_url(),
    ])
}

/// Writes a project (`dari.yml`, the instructions, and `files`) and deploys it.
pub(crate) async fn deploy(control: &ControlServer, manifest: &str, files: &[(&str, &str)]) -> DeployedAgent {
    let dir = tempfile::tempdir().expect("a project directory");
    write(dir.path(), "dari.yml", manifest);
    write(dir.path(), "prompts/system.md", INSTRUCTIONS);
    for (path, contents) in files {
        write(dir.path(), path, contents);
    }
    deploy_project(control, dir.path()).await
}

fn write(root: &Path, path: &str, contents: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the project's directories");
    std::fs::write(path, contents).expect("write a project file");
}

/// A pi agent on the OpenAI model `gpt-test`, with `extra` appended to its manifest.
pub(crate) fn manifest(extra: &str) -> String {
    format!(
        "name: pi-test\nharness: pi\ninstructions:\n  system: prompts/system.md\nllm:\n  model: openai/gpt-test\n{extra}"
    )
}

/// The types of the session's events, in order.
pub(crate) async fn events(control: &ControlServer, session_id: &str) -> Vec<Value> {
    let (status, page) = control.get(&format!("/v1/sessions/{session_id}/events?limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["events"].as_array().expect("events").clone()
}

pub(crate) fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events.iter().filter(|event| event["type"] == event_type).collect()
}

/// The session's workspace as `workspace.zip` has it: (path, contents).
pub(crate) async fn workspace_zip(control: &ControlServer, session_id: &str) -> Vec<(String, Vec<u8>)> {
    let response = control
        .request(Method::GET, &format!("/v1/sessions/{session_id}/workspace.zip"))
        .send()
        .await
        .expect("download the workspace");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.expect("the zip");
    crate::files::workspace_zip::unzip(&bytes)
}

pub(crate) fn file<'a>(zip: &'a [(String, Vec<u8>)], path: &str) -> Option<&'a str> {
    zip.iter().find(|(name, _)| name == path).map(|(_, contents)| std::str::from_utf8(contents).expect("UTF-8"))
}

/// The kinds of a message's output parts, in order.
pub(crate) fn part_types(message: &Value) -> Vec<&str> {
    message["output"]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|part| part["type"].as_str().unwrap_or(""))
        .collect()
}
