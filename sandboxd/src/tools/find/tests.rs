use dari_protocol::tools::ToolResult;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::tools::{BashConfig, FileLocks, ToolContext, Workspace, run_tool};

/// A temporary workspace holding `files`, each with one line.
fn workspace(files: &[&str]) -> (tempfile::TempDir, ToolContext) {
    let files: Vec<(&str, &[u8])> = files.iter().map(|path| (*path, b"x\n".as_slice())).collect();
    crate::tools::test_support::workspace(&files)
}

async fn find(context: &ToolContext, arguments: Value) -> ToolResult {
    run_tool(context, "find", arguments, CancellationToken::new(), None).await
}

#[track_caller]
fn check(result: &ToolResult, expected: &str) {
    assert!(!result.is_error, "unexpected error: {}", result.joined_text());
    assert_eq!(result.joined_text(), expected);
}

#[track_caller]
fn check_error(result: &ToolResult, expected_part: &str) {
    assert!(result.is_error, "expected an error, got: {}", result.joined_text());
    assert!(result.joined_text().contains(expected_part), "{:?} lacks {expected_part:?}", result.joined_text());
}

#[tokio::test]
async fn patterns_match_basenames_or_relative_paths() {
    let (dir, context) = workspace(&[
        "main.rs",
        "src/lib.rs",
        "src/app.spec.ts",
        "src/app.ts",
        "src/deep/x.spec.ts",
        "test/src/y.spec.ts",
        "a/b.txt",
        "x/a/b.txt",
        "a/c/b.txt",
        "package.json",
        "src/config.json",
    ]);
    let root = dir.path().canonicalize().expect("canonical root");
    let absolute = format!("{}/src/*.ts", root.display());
    let cases = [
        (json!({"pattern": "*.rs"}), "main.rs\nsrc/lib.rs"),
        (json!({"pattern": "src/**/*.spec.ts"}), "src/app.spec.ts\nsrc/deep/x.spec.ts\ntest/src/y.spec.ts"),
        (json!({"pattern": "a/b.txt"}), "a/b.txt\nx/a/b.txt"),
        (json!({"pattern": "**/*.json"}), "package.json\nsrc/config.json"),
        (json!({"pattern": "src/*.ts"}), "src/app.spec.ts\nsrc/app.ts\ntest/src/y.spec.ts"),
        (json!({"pattern": "/src/*.ts"}), "src/app.spec.ts\nsrc/app.ts"),
        (json!({"pattern": "./src/*.ts"}), "src/app.spec.ts\nsrc/app.ts"),
        (json!({"pattern": absolute}), "src/app.spec.ts\nsrc/app.ts"),
        (json!({"pattern": "*.{rs,json}", "path": "src"}), "config.json\nlib.rs"),
        (json!({"pattern": "src"}), "src/\ntest/src/"),
        (json!({"pattern": "src/"}), "src/\ntest/src/"),
        (json!({"pattern": "*", "path": "a"}), "b.txt\nc/\nc/b.txt"),
        (json!({"pattern": "*.py"}), "No files found matching pattern"),
    ];
    for (arguments, expected) in cases {
        check(&find(&context, arguments).await, expected);
    }
}

#[tokio::test]
async fn ignores_hidden_and_skipped_directories() {
    let (dir, context) = workspace(&[
        ".gitignore",
        "build/out.txt",
        "keep.txt",
        "debug.log",
        ".hidden/h.txt",
        ".env",
        "node_modules/pkg/index.txt",
        ".git/HEAD",
    ]);
    std::fs::write(dir.path().join(".gitignore"), "build/\n*.log\n").expect("write");
    assert!(std::fs::read_to_string(dir.path().join(".git/HEAD")).is_ok(), "a .git dir exists");
    check(&find(&context, json!({"pattern": "*"})).await, ".env\n.gitignore\n.hidden/\n.hidden/h.txt\nkeep.txt");
    std::fs::remove_dir_all(dir.path().join(".git")).expect("remove .git");
    check(&find(&context, json!({"pattern": "*.txt"})).await, ".hidden/h.txt\nkeep.txt");
}

#[tokio::test]
async fn limit_and_footer_are_exact() {
    let names: Vec<String> = (0..5).map(|n| format!("f{n}.txt")).collect();
    let (_dir, context) = workspace(&names.iter().map(String::as_str).collect::<Vec<_>>());
    check(
        &find(&context, json!({"pattern": "*.txt", "limit": 2})).await,
        "f0.txt\nf1.txt\n\n[2 results limit reached. Use limit=4 for more, or refine pattern]",
    );
    let result = find(&context, json!({"pattern": "*.txt", "limit": "5"})).await;
    check(&result, "f0.txt\nf1.txt\nf2.txt\nf3.txt\nf4.txt");
    assert_eq!(result.details["limitReached"], false);
}

#[tokio::test]
async fn default_limit_and_byte_limit() {
    let dir = tempfile::tempdir().expect("create temp dir");
    for n in 0..1100 {
        let short = dir.path().join(format!("short/f{n:04}.txt"));
        let long = dir.path().join(format!("long/{}-{n:04}.txt", "long-name".repeat(6)));
        for path in [short, long] {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, "").expect("write");
        }
    }
    let workspace = Workspace::new(dir.path()).expect("open workspace");
    let bash = BashConfig::for_workspace(workspace.root());
    let context = ToolContext { workspace, locks: FileLocks::default(), bash };
    let result = find(&context, json!({"pattern": "*.txt", "path": "short"})).await;
    let text = result.joined_text();
    assert!(text.starts_with("f0000.txt\nf0001.txt\n"));
    assert_eq!(text.lines().count(), 1002, "1000 results, a blank line and the footer");
    assert!(text.ends_with("\nf0999.txt\n\n[1000 results limit reached. Use limit=2000 for more, or refine pattern]"));
    let result = find(&context, json!({"pattern": "*.txt", "path": "long"})).await;
    let text = result.joined_text();
    assert!(text.len() <= 51200 + 30 && text.ends_with("\n\n[50.0KB limit reached]"), "{text}");
    assert_eq!(result.details["truncation"]["truncatedBy"], "bytes");
}

#[tokio::test]
async fn escapes_are_refused_and_outside_symlinks_not_followed() {
    let outside = tempfile::tempdir().expect("create temp dir");
    std::fs::write(outside.path().join("secret.txt"), "x\n").expect("write");
    let (dir, context) = workspace(&["a.txt"]);
    std::os::unix::fs::symlink(outside.path(), dir.path().join("outside")).expect("symlink");
    check(&find(&context, json!({"pattern": "*"})).await, "a.txt\noutside");
    check(&find(&context, json!({"pattern": "secret.txt"})).await, "No files found matching pattern");
    let outside_path = outside.path().to_str().expect("utf-8 temp path");
    for path in ["..", "../x", outside_path, "outside"] {
        check_error(&find(&context, json!({"pattern": "*", "path": path})).await, "outside the workspace");
    }
}

#[tokio::test]
async fn bad_input_is_an_error() {
    let (_dir, context) = workspace(&["a.txt"]);
    check_error(&find(&context, json!({"pattern": "a[b"})).await, "invalid glob pattern \"a[b\"");
    check_error(&find(&context, json!({"pattern": "*", "path": "a.txt"})).await, "Not a directory: a.txt");
    check_error(&find(&context, json!({"pattern": "*", "path": "missing"})).await, "Path not found: missing");
    check_error(&find(&context, json!({"path": "."})).await, "invalid arguments for find");
    let cancel = CancellationToken::new();
    cancel.cancel();
    check_error(&run_tool(&context, "find", json!({"pattern": "*"}), cancel, None).await, "Operation aborted");
}
