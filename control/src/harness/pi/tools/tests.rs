//! Tests of the tool catalog: which tools a manifest yields, the built-in schemas against the
//! arguments sandboxd reads, coercion, pi's error texts, output checks and the documented defaults.

use std::time::Duration;

use dari_protocol::manifest::{self, BuiltInTool, Manifest, MemoryFiles, ToolRuntime};
use serde_json::{Value, json};

use super::{CatalogError, CatalogToolKind, EXTERNAL_TOOL_DEFAULT_TIMEOUT, MAIN_TOOL_DEFAULT_TIMEOUT, ToolCatalog};

const COUNT_INPUT: &str = r##"{
  "type": "object",
  "properties": {
    "text": {"type": "string"},
    "times": {"type": "integer"},
    "ratio": {"type": "number"},
    "loud": {"type": "boolean"},
    "nothing": {"type": "null"},
    "options": {"type": "object", "properties": {"depth": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "integer"}}}},
    "either": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
    "shape": {"oneOf": [
      {"type": "object", "properties": {"kind": {"const": "circle"}, "radius": {"type": "number"}}, "required": ["kind"]},
      {"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "integer"}}, "required": ["kind"]}
    ]},
    "point": {"$ref": "#/$defs/point"}
  },
  "required": ["text"],
  "$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}}}
}"##;

fn manifest(tail: &str) -> Manifest {
    let files = MemoryFiles::new()
        .with("prompts/system.md", "Be brief.")
        .with("tools/count/tool.yml", "name: count\ndescription: |\n  Count words.\n  Then more detail.\ninput_schema: input.json\nruntime: python\nhandler: handler.py:main\n")
        .with("tools/count/input.json", COUNT_INPUT)
        .with("tools/count/handler.py", "def main(input):\n    return {}\n")
        .with("tools/approve/tool.yml", "name: approve\ndescription: Ask a human.\ninput_schema: input.json\noutput_schema: output.json\n")
        .with("tools/approve/input.json", r#"{"type":"object","properties":{"question":{"type":"string"}}}"#)
        .with("tools/approve/output.json", r#"{"type":"object","properties":{"approved":{"type":"boolean"}},"required":["approved"]}"#);
    let yaml =
        format!("name: a\nharness: pi\ninstructions: {{system: prompts/system.md}}\nllm: {{model: x/y}}\n{tail}");
    let validation = manifest::validate(yaml.as_bytes(), &files);
    validation.manifest.unwrap_or_else(|| panic!("invalid test manifest: {:?}", validation.diagnostics))
}

const CUSTOM_TOOLS: &str = "custom_tools:\n  - {name: count, path: tools/count, kind: main}\n  - {name: approve, path: tools/approve, kind: external}\n";

fn catalog(tail: &str) -> ToolCatalog {
    ToolCatalog::new(&manifest(tail)).expect("tools compile")
}

fn names(catalog: &ToolCatalog) -> Vec<&str> {
    catalog.tools().iter().map(|tool| tool.spec.name.as_str()).collect()
}

#[track_caller]
fn check_prepared(catalog: &ToolCatalog, name: &str, arguments: Value, expected: Value) {
    match catalog.prepare(name, &arguments) {
        Ok((tool, prepared)) => {
            assert_eq!(tool.spec.name, name);
            assert_eq!(prepared, expected, "arguments {arguments}");
        }
        Err(error) => panic!("{name} refused {arguments}:\n{error}"),
    }
}

#[track_caller]
fn check_refused(catalog: &ToolCatalog, name: &str, arguments: Value, expected: &str) {
    match catalog.prepare(name, &arguments) {
        Ok((_, prepared)) => panic!("{name} accepted {arguments} as {prepared}"),
        Err(error) => assert_eq!(error, expected),
    }
}

#[test]
fn the_catalog_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync>() {}
    shareable::<ToolCatalog>();
}

#[test]
fn built_in_tools_follow_the_manifest_in_pis_order_then_custom_tools() {
    assert_eq!(names(&catalog("")), ["read", "bash", "edit", "write"]);
    assert_eq!(names(&catalog("built_in_tools: []\n")), Vec::<&str>::new());
    assert_eq!(names(&catalog("built_in_tools: [ls, read, grep]\n")), ["read", "grep", "ls"]);
    let all = catalog(&format!("built_in_tools: [find, ls, grep, write, edit, bash, read]\n{CUSTOM_TOOLS}"));
    assert_eq!(names(&all), ["read", "bash", "edit", "write", "grep", "find", "ls", "count", "approve"]);
    assert!(all.has_built_in(BuiltInTool::Ls));
    assert!(!catalog("").has_built_in(BuiltInTool::Ls));
    assert_eq!(all.specs().len(), 9);
}

#[test]
fn built_in_schemas_accept_what_sandboxd_reads() {
    let catalog = catalog("built_in_tools: [read, bash, edit, write, grep, find, ls]\n");
    for tool in catalog.tools() {
        let spec = serde_json::to_string(&tool.spec).expect("serialize");
        assert!(!spec.contains("  ") && !spec.contains(" \\n"), "stray whitespace in {spec}");
    }
    let unchanged = [
        ("bash", json!({"command": "echo hello"})),
        ("bash", json!({"command": "echo a", "timeout": 0.5})),
        (
            "edit",
            json!({"path": "f.txt", "edits": [{"oldText": "two", "newText": "2"}, {"oldText": "three", "newText": "3"}]}),
        ),
        ("write", json!({"path": "a/b.txt", "content": "x"})),
        ("find", json!({"pattern": "*.{rs,json}", "path": "src"})),
        ("find", json!({"pattern": "*.txt", "limit": 2})),
        ("grep", json!({"pattern": "fn main", "glob": "*.rs", "literal": true, "context": 2, "limit": 10})),
        ("ls", json!({})),
        ("read", json!({"path": "f.txt", "offset": 10, "limit": 5, "extra": "ignored"})),
    ];
    for (name, arguments) in unchanged {
        check_prepared(&catalog, name, arguments.clone(), arguments);
    }
    check_prepared(
        &catalog,
        "bash",
        json!({"command": "echo a", "timeout": "5"}),
        json!({"command": "echo a", "timeout": 5}),
    );
    check_prepared(&catalog, "read", json!({"path": "f", "offset": "10"}), json!({"path": "f", "offset": 10}));
    check_prepared(
        &catalog,
        "grep",
        json!({"pattern": "x", "ignoreCase": "true", "context": "2"}),
        json!({"pattern": "x", "ignoreCase": true, "context": 2}),
    );
    check_prepared(&catalog, "ls", json!({"path": "a", "limit": "3"}), json!({"path": "a", "limit": 3}));
}

#[test]
fn legacy_edit_arguments_are_reshaped_as_pi_does() {
    let catalog = catalog("");
    let edit = |old: &str, new: &str| json!({"oldText": old, "newText": new});
    check_prepared(
        &catalog,
        "edit",
        json!({"path": "f.txt", "oldText": "one", "newText": "1"}),
        json!({"path": "f.txt", "edits": [edit("one", "1")]}),
    );
    check_prepared(
        &catalog,
        "edit",
        json!({"path": "f.txt", "edits": r#"[{"oldText":"two","newText":"2"}]"#}),
        json!({"path": "f.txt", "edits": [edit("two", "2")]}),
    );
    check_prepared(
        &catalog,
        "edit",
        json!({"path": "f.txt", "edits": [edit("one", "1")], "oldText": "two", "newText": "2"}),
        json!({"path": "f.txt", "edits": [edit("one", "1"), edit("two", "2")]}),
    );
    check_prepared(
        &catalog,
        "edit",
        json!({"path": "f", "edits": edit("a", "b")}),
        json!({"path": "f", "edits": [edit("a", "b")]}),
    );
}

#[test]
fn validation_errors_list_each_bad_field_and_the_received_arguments() {
    let catalog = catalog("");
    check_refused(
        &catalog,
        "bash",
        json!({"timeout": 1}),
        "Validation failed for tool \"bash\":\n  - command: \"command\" is a required property\n\nReceived arguments:\n{\n  \"timeout\": 1\n}",
    );
    let error = catalog.prepare("bash", &json!({"command": 5, "timeout": "soon"})).expect_err("refused");
    let lines: Vec<&str> = error.lines().collect();
    assert_eq!(lines[0], "Validation failed for tool \"bash\":");
    assert!(lines.contains(&"  - timeout: \"soon\" is not of type \"number\""), "{error}");
    // The number is coerced to a string, as AJV does, so only the timeout is at fault.
    assert_eq!(lines.iter().filter(|line| line.starts_with("  - ")).count(), 1, "{error}");
    assert!(error.ends_with("Received arguments:\n{\n  \"command\": 5,\n  \"timeout\": \"soon\"\n}"), "{error}");
    let error = catalog.prepare("edit", &json!({"edits": [{"oldText": "a"}]})).expect_err("refused");
    assert!(error.contains("\n  - path: \"path\" is a required property\n"), "{error}");
    assert!(error.contains("\n  - edits/0/newText: \"newText\" is a required property\n"), "{error}");
    let error = catalog.prepare("bash", &json!({"command": "x", "timeout": 0})).expect_err("refused");
    assert!(error.contains("  - timeout: 0 is less than or equal to the minimum of 0"), "{error}");
    let error = catalog.prepare("bash", &json!(["ls"])).expect_err("refused");
    assert!(error.contains("  - root: [\"ls\"] is not of type \"object\""), "{error}");
}

#[test]
fn unknown_tools_and_arguments_that_are_not_json() {
    let catalog = catalog("");
    check_refused(&catalog, "grep", json!({"pattern": "x"}), "Tool grep not found");
    check_prepared(&catalog, "bash", Value::String(r#"{"command": "ls"}"#.to_owned()), json!({"command": "ls"}));
    let error = catalog.prepare("bash", &Value::String(r#"{"command": "ls"#.to_owned())).expect_err("refused");
    assert!(error.starts_with("The arguments for tool \"bash\" are not valid JSON ("), "{error}");
    assert!(error.ends_with("\n\nReceived arguments:\n{\"command\": \"ls"), "{error}");
    let listing = ToolCatalog::new(&manifest("built_in_tools: [ls]\n")).expect("tools compile");
    check_prepared(&listing, "ls", Value::String(String::new()), json!({}));
    check_prepared(&listing, "ls", Value::Null, json!({}));
}

#[test]
fn arguments_are_coerced_like_ajv() {
    let catalog = catalog(CUSTOM_TOOLS);
    let cases = [
        (json!({"text": "a", "times": "5"}), json!({"text": "a", "times": 5})),
        (json!({"text": 7, "ratio": "2.5", "loud": "false"}), json!({"text": "7", "ratio": 2.5, "loud": false})),
        (json!({"text": true, "times": true, "nothing": ""}), json!({"text": "true", "times": 1, "nothing": null})),
        (json!({"text": "a", "times": "5.0", "loud": 1}), json!({"text": "a", "times": 5, "loud": true})),
        (
            json!({"text": "a", "options": {"depth": "3", "tags": ["1", 2, "3"]}}),
            json!({"text": "a", "options": {"depth": 3, "tags": [1, 2, 3]}}),
        ),
        (json!({"text": "a", "options": {"tags": "4"}}), json!({"text": "a", "options": {"tags": [4]}})),
        (json!({"text": "a", "options": {"tags": "[1, \"2\"]"}}), json!({"text": "a", "options": {"tags": [1, 2]}})),
        (json!({"text": "a", "options": "{\"depth\": \"1\"}"}), json!({"text": "a", "options": {"depth": 1}})),
        (json!({"text": "a", "either": "7"}), json!({"text": "a", "either": 7})),
        (json!({"text": "a", "either": "true"}), json!({"text": "a", "either": true})),
        (
            json!({"text": "a", "shape": {"kind": "square", "side": "4"}}),
            json!({"text": "a", "shape": {"kind": "square", "side": 4}}),
        ),
        (
            json!({"text": "a", "shape": {"kind": "circle", "radius": "1.5"}}),
            json!({"text": "a", "shape": {"kind": "circle", "radius": 1.5}}),
        ),
        (json!({"text": "a", "point": {"x": "1", "y": -2}}), json!({"text": "a", "point": {"x": 1, "y": -2}})),
    ];
    for (arguments, expected) in cases {
        check_prepared(&catalog, "count", arguments, expected);
    }
    for (arguments, at_fault) in [
        (json!({"text": "a", "times": "5.5"}), "  - times: \"5.5\" is not of type \"integer\""),
        (json!({"text": "a", "times": " five"}), "  - times: \" five\" is not of type \"integer\""),
        (json!({"text": "a", "loud": "yes"}), "  - loud: \"yes\" is not of type \"boolean\""),
        (json!({"text": "a", "point": {"x": "left"}}), "  - point/x: \"left\" is not of type \"integer\""),
    ] {
        let error = catalog.prepare("count", &arguments).expect_err("refused");
        assert!(error.contains(at_fault), "{error}");
    }
}

#[test]
fn results_are_checked_against_the_output_schema() {
    let catalog = catalog(CUSTOM_TOOLS);
    assert_eq!(catalog.check_output("approve", &json!({"approved": true})), Ok(()));
    assert_eq!(
        catalog.check_output("approve", &json!({"approved": "maybe"})),
        Err("The result of tool \"approve\" does not match its output schema:\n  - approved: \"maybe\" is not of type \"boolean\"\n\nReceived result:\n{\n  \"approved\": \"maybe\"\n}".to_owned())
    );
    assert_eq!(catalog.check_output("count", &json!("anything")), Ok(()));
    assert_eq!(catalog.check_output("read", &json!(1)), Ok(()));
    assert_eq!(catalog.check_output("nope", &json!(1)), Err("Tool nope not found".to_owned()));
}

#[test]
fn custom_tools_take_the_documented_defaults() {
    let catalog = catalog(CUSTOM_TOOLS);
    let count = catalog.get("count").expect("count");
    assert_eq!(count.spec.description, "Count words.\nThen more detail.");
    assert_eq!(count.prompt_snippet, "Count words.");
    let CatalogToolKind::Main { runtime, handler, timeout, retry } = &count.kind else { panic!("{:?}", count.kind) };
    assert_eq!(
        (*runtime, handler.function.as_str(), *timeout),
        (ToolRuntime::Python, "main", MAIN_TOOL_DEFAULT_TIMEOUT)
    );
    assert_eq!((retry.delay_before(1), retry.delay_before(2)), (Some(Duration::ZERO), None));
    let approve = catalog.get("approve").expect("approve");
    assert_eq!(approve.kind, CatalogToolKind::External { timeout: EXTERNAL_TOOL_DEFAULT_TIMEOUT });
    assert_eq!(approve.output_schema.as_ref().and_then(|schema| schema.get("required")), Some(&json!(["approved"])));

    let mut bare = manifest(CUSTOM_TOOLS);
    bare.custom_tools[0].description = None;
    bare.custom_tools[0].input_schema = None;
    let bare = ToolCatalog::new(&bare).expect("tools compile");
    let count = bare.get("count").expect("count");
    assert_eq!(
        (count.spec.description.as_str(), count.prompt_snippet.as_str()),
        ("The custom tool count.", "The custom tool count.")
    );
    assert_eq!(count.spec.parameters, json!({"type": "object"}));
    check_prepared(&bare, "count", json!({"anything": 1}), json!({"anything": 1}));
}

#[test]
fn retries_and_timeouts_come_from_the_manifest() {
    let seconds = |list: &[u64]| list.iter().map(|&s| Some(Duration::from_secs(s))).collect::<Vec<_>>();
    let retry_of = |entry: &str| {
        let catalog = catalog(&format!("custom_tools:\n  - {{name: count, path: tools/count, kind: main, {entry}}}\n"));
        match catalog.get("count").map(|tool| tool.kind.clone()) {
            Some(CatalogToolKind::Main { timeout, retry, .. }) => {
                (timeout, (2..=5).map(|n| retry.delay_before(n)).collect::<Vec<_>>())
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        retry_of("retries: 2, timeout_seconds: 30"),
        (Duration::from_secs(30), [seconds(&[1, 1]), vec![None, None]].concat())
    );
    assert_eq!(
        retry_of("retry_policy: {maximum_attempts: 4, initial_interval_seconds: 2}"),
        (MAIN_TOOL_DEFAULT_TIMEOUT, [seconds(&[2, 4, 8]), vec![None]].concat())
    );
    assert_eq!(
        retry_of("retry_policy: {backoff_coefficient: 3}"),
        (MAIN_TOOL_DEFAULT_TIMEOUT, [seconds(&[1, 3]), vec![None, None]].concat())
    );
    let external =
        catalog("custom_tools:\n  - {name: approve, path: tools/approve, kind: external, timeout_seconds: 600}\n");
    assert_eq!(
        external.get("approve").map(|tool| tool.kind.clone()),
        Some(CatalogToolKind::External { timeout: Duration::from_secs(600) })
    );
}

#[test]
fn manifests_the_catalog_cannot_offer_are_refused() {
    let mut broken = manifest(CUSTOM_TOOLS);
    broken.custom_tools[0].handler = None;
    let error = ToolCatalog::new(&broken).expect_err("refused");
    assert!(matches!(error, CatalogError::MainToolIncomplete { missing: "handler", .. }), "{error}");
    let mut broken = manifest(CUSTOM_TOOLS);
    broken.custom_tools[1].name = "read".to_owned();
    assert_eq!(ToolCatalog::new(&broken).expect_err("refused").to_string(), "tool read is declared twice");
    let mut broken = manifest(CUSTOM_TOOLS);
    broken.custom_tools[1].output_schema = Some(json!({"type": "no-such-type"}));
    let error = ToolCatalog::new(&broken).expect_err("refused").to_string();
    assert!(error.starts_with("compile the output schema of tool approve: "), "{error}");
}
