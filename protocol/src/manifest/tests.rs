use super::*;

const SYSTEM: &str = "prompts/system.md";

fn files() -> MemoryFiles {
    MemoryFiles::new().with(SYSTEM, "You are helpful.")
}

#[track_caller]
fn valid(yaml: &str, files: &MemoryFiles) -> Manifest {
    let validation = validate(yaml.as_bytes(), files);
    let errors: Vec<String> = validation.diagnostics.iter().map(ToString::to_string).collect();
    validation.manifest.unwrap_or_else(|| panic!("expected a valid manifest, got:\n{}", errors.join("\n")))
}

#[track_caller]
fn errors(yaml: &str, files: &MemoryFiles) -> Vec<Diagnostic> {
    let validation = validate(yaml.as_bytes(), files);
    assert!(validation.manifest.is_none(), "expected errors");
    validation.diagnostics.into_iter().filter(|diagnostic| diagnostic.severity == Severity::Error).collect()
}

#[test]
fn minimal_pi_manifest_gets_defaults() {
    let manifest = valid(
        "name: my-agent\nharness: pi\ninstructions:\n  system: prompts/system.md\nllm:\n  model: openai/gpt-5.5\n",
        &files(),
    );
    assert_eq!(manifest.harness, Harness::Pi);
    assert_eq!(manifest.built_in_tools, BuiltInTool::DEFAULT);
    let llm = manifest.llm.expect("llm");
    assert_eq!(llm.default, "default");
    assert_eq!(llm.options["default"].provider, LlmProvider::Openai);
    assert_eq!(manifest.sandbox.storage_mount_path, "/workspace");
    assert!(!manifest.sandbox.internet_access);
}

#[test]
fn providers_are_inferred_from_the_model_prefix() {
    for (model, provider) in [
        ("openai/gpt-4.1-mini", LlmProvider::Openai),
        ("anthropic/claude-sonnet-4.6", LlmProvider::Anthropic),
        ("google/gemini-3-pro", LlmProvider::Openrouter),
        ("gpt-5", LlmProvider::Openrouter),
    ] {
        let yaml =
            format!("name: a\nharness: pi\ninstructions: {{system: prompts/system.md}}\nllm: {{model: {model}}}\n");
        let manifest = valid(&yaml, &files());
        assert_eq!(manifest.llm.expect("llm").options["default"].provider, provider, "{model}");
    }
}

#[test]
fn named_llm_options_share_the_retry_policy() {
    let yaml = "name: a\nharness: pi\ninstructions: {system: prompts/system.md}\nllm:\n  default: fast\n  retry_policy: {maximum_attempts: 3}\n  options:\n    fast: {model: openai/gpt-5-mini}\n    smart: {provider: anthropic, model: claude-opus-4, retry_policy: {maximum_attempts: 9}}\n";
    let llm = valid(yaml, &files()).llm.expect("llm");
    assert_eq!(llm.default, "fast");
    assert_eq!(llm.options["fast"].retry_policy.as_ref().and_then(|policy| policy.maximum_attempts), Some(3));
    assert_eq!(llm.options["smart"].retry_policy.as_ref().and_then(|policy| policy.maximum_attempts), Some(9));
    assert_eq!(llm.options["smart"].provider, LlmProvider::Anthropic);
}

#[test]
fn custom_runtime_server_with_defaults() {
    let yaml = "name: echo\nharness:\n  kind: customRuntimeServer\n  protocol: dari-runtime-v1\n  customRuntimeServer:\n    command: python3 server.py\n    port: 8787\ninstructions: {system: prompts/system.md}\nbuilt_in_tools: []\n";
    let manifest = valid(yaml, &files());
    let Harness::CustomRuntimeServer(server) = manifest.harness else { panic!("wrong harness") };
    assert_eq!(
        (server.port, server.health_path.as_str(), server.advance_path.as_str()),
        (8787, "/health", "/runtime/advance")
    );
    assert!(manifest.built_in_tools.is_empty());
    assert!(manifest.llm.is_none());
}

#[test]
fn versions_keep_their_written_form() {
    let yaml = "name: a\nharness: pi\ninstructions: {system: prompts/system.md}\nllm: {model: x/y}\nsandbox:\n  runtimes: {python: 3.10, node: 20}\n  env: {DEBUG: true, COUNT: 3}\n";
    let sandbox = valid(yaml, &files()).sandbox;
    assert_eq!(sandbox.runtimes.python.as_deref(), Some("3.10"));
    assert_eq!(sandbox.runtimes.node.as_deref(), Some("20"));
    assert_eq!(sandbox.env["DEBUG"], "true");
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let yaml = "name: ''\nharness: pi\ninstructions: {system: missing.md}\nllm: {model: x, colour: red}\nsandbox: {resources: {cpu: 0}}\nbuilt_in_tools: [read, nope]\n";
    let found: Vec<String> = errors(yaml, &files()).iter().map(Diagnostic::qualified_path).collect();
    assert_eq!(found, ["name", "instructions.system", "llm.colour", "sandbox.resources.cpu", "built_in_tools[1]"]);
}

#[test]
fn diagnostics_carry_line_column_and_hint() {
    let yaml = "name: a\nharness:\n  kind: customRuntimeServer\n  protocol: dari-runtime-v1\n  customRuntimeServer:\n    command: x\n    port: \"8787\"\ninstructions: {system: prompts/system.md}\n";
    let found = errors(yaml, &files());
    assert_eq!(found.len(), 1, "{found:?}");
    let port = &found[0];
    assert_eq!(port.path, "harness.customRuntimeServer.port");
    assert_eq!((port.line, port.column), (Some(7), Some(11)));
    assert_eq!(port.hint.as_deref(), Some("remove the quotes around the number"));
    assert_eq!(
        port.to_string(),
        "dari.yml:7:11: error: harness.customRuntimeServer.port: expected a positive whole number, found \"8787\" (quoted text)\n  hint: remove the quotes around the number"
    );
}

#[test]
fn unknown_fields_suggest_the_closest_one() {
    let found = errors("name: a\nharnes: pi\ninstructions: {system: prompts/system.md}\n", &files());
    let unknown = found.iter().find(|diagnostic| diagnostic.path == "harnes").expect("unknown field reported");
    assert_eq!(unknown.hint.as_deref(), Some("did you mean `harness`?"));
    assert!(found.iter().any(|diagnostic| diagnostic.path == "harness"), "missing harness reported too");
}

#[test]
fn tools_skills_and_extensions_are_read_from_the_bundle() {
    let files = files()
        .with("skills/review/SKILL.md", "---\nname: review\ndescription: Review a diff.\ndisable-model-invocation: true\nlicense: MIT\n---\nBody\n")
        .with("tools/count/tool.yml", "name: count\ndescription: Count words.\ninput_schema: input.json\noutput_schema: output.json\nruntime: python\nhandler: handler.py:main\n")
        .with("tools/count/input.json", r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}"#)
        .with("tools/count/output.json", r#"{"type":"object"}"#)
        .with("tools/count/handler.py", "def main(input):\n    return {}\n")
        .with("tools/approve/tool.yml", "name: approve\ndescription: Ask a human.\ninput_schema: input.json\n")
        .with("tools/approve/input.json", r#"{"type":"object"}"#)
        .with("tools/search/tool.ts", "export const description = 'Search files';\nexport const inputSchema = {type: 'object'};\nexport async function handler(input) { return {}; }\n")
        .with("extensions/guard/index.ts", "export default function () {}\n");
    let yaml = "name: a\nharness: pi\ninstructions: {system: prompts/system.md}\nllm: {model: x/y}\nskills:\n  - {name: review, path: skills/review}\nextensions:\n  - {name: guard, path: extensions/guard}\ncustom_tools:\n  - {name: count, path: tools/count, kind: main, retries: 2, timeout_seconds: 30}\n  - {name: approve, path: tools/approve, kind: external, timeout_seconds: 600}\n";
    let manifest = valid(yaml, &files);
    assert_eq!(manifest.skills[0].description, "Review a diff.");
    assert!(manifest.skills[0].disable_model_invocation);
    assert_eq!(manifest.extensions[0].path, "extensions/guard");
    let names: Vec<&str> = manifest.custom_tools.iter().map(|tool| tool.name.as_str()).collect();
    assert_eq!(names, ["count", "approve", "search"]);
    let count = &manifest.custom_tools[0];
    assert_eq!(count.handler, Some(Handler { file: "tools/count/handler.py".to_owned(), function: "main".to_owned() }));
    assert_eq!(count.runtime, Some(ToolRuntime::Python));
    assert_eq!(
        count.input_schema.as_ref().and_then(|schema| schema.get("required")),
        Some(&serde_json::json!(["text"]))
    );
    let search = &manifest.custom_tools[2];
    assert_eq!((search.source, search.kind), (ToolSource::CodeFirst, ToolKind::Main));
    assert_eq!(search.description.as_deref(), Some("Search files"));
    assert_eq!(search.handler.as_ref().map(|handler| handler.file.as_str()), Some("tools/search/tool.ts"));
}

#[test]
fn the_model_round_trips_through_json() {
    let manifest = valid(
        "name: my-agent\nharness: pi\ninstructions:\n  system: prompts/system.md\nllm:\n  model: openai/gpt-5.5\n",
        &files(),
    );
    let json = serde_json::to_value(&manifest).expect("serialize");
    assert_eq!(json["harness"], serde_json::json!({"kind": "pi"}));
    assert_eq!(json["built_in_tools"], serde_json::json!(["read", "bash", "edit", "write"]));
    let back: Manifest = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, manifest);
}
