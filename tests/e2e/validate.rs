//! `dari validate` on real projects: the examples, and the human output format.

use dari_tests::binaries::dari;
use dari_tests::{workspace_root, write_tree};

const EXAMPLES: &[&str] = &["echo-runtime", "claude-sdk-runtime", "pi-agent"];

#[test]
fn every_example_validates() {
    for example in EXAMPLES {
        let dir = workspace_root().join("examples").join(example);
        let output = dari(&["validate", dir.to_str().expect("UTF-8 path")]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{example}:\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("dari.yml is valid: agent"), "{example}: {stdout}");
    }
}

#[test]
fn json_output_carries_the_manifest() {
    let dir = workspace_root().join("examples/pi-agent");
    let output = dari(&["validate", "--json", dir.to_str().expect("UTF-8 path")]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["valid"], true);
    let manifest = &report["manifest"];
    assert_eq!(manifest["name"], "pi-agent");
    assert_eq!(manifest["llm"]["default"], "fast");
    let tools: Vec<&str> = manifest["custom_tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|tool| tool["name"].as_str().expect("name"))
        .collect();
    assert_eq!(tools, ["word_count", "request_approval", "repo_search"]);
    assert_eq!(manifest["custom_tools"][2]["source"], "code_first");
    assert_eq!(manifest["skills"][0]["name"], "review");
}

#[test]
fn human_output_names_file_line_column_and_hint() {
    let project = tempfile::tempdir().expect("temp dir");
    let dari_yml = "name: a\nharness:\n  kind: customRuntimeServer\n  protocol: dari-runtime-v1\n  customRuntimeServer:\n    command: ./serve\n    port: http\ninstructions:\n  system: prompts/system.md\nllm:\n  model: openai/gpt-4.1-mini\n  retry_policy:\n    backoff_coefficient: 0.5\n";
    write_tree(project.path(), [("dari.yml", dari_yml.as_bytes()), ("prompts/system.md", b"hi".as_slice())]);
    let output = dari(&["validate", project.path().to_str().expect("UTF-8 path")]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = "\
dari.yml:7:11: error: harness.customRuntimeServer.port: expected a positive whole number, found `http`
  hint: write a plain number such as 30, without units or quotes
dari.yml:13:26: error: llm.retry_policy.backoff_coefficient: must be at least 1, found 0.5
  hint: use 1 for a constant interval, or more to back off
dari.yml is invalid: 2 errors, 0 warnings
";
    assert_eq!(stdout, expected);
}

#[test]
fn a_missing_manifest_is_explained() {
    let project = tempfile::tempdir().expect("temp dir");
    write_tree(project.path(), [("README.md", b"no manifest".as_slice())]);
    let output = dari(&["validate", project.path().to_str().expect("UTF-8 path")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("no dari.yml in"));
}

#[test]
fn a_missing_directory_is_a_usage_error() {
    let output = dari(&["validate", "/nonexistent/project"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("open project directory /nonexistent/project"));
}
