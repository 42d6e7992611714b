//! Tests of `ls`: order, directory marks, symlinks, limits and escapes.

use std::fs;
use std::os::unix::fs::symlink;

use dari_protocol::tools::ToolResult;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::tools::test_support::fixture;
use crate::tools::{ToolContext, run_tool};

async fn ls(context: &ToolContext, arguments: Value) -> ToolResult {
    run_tool(context, "ls", arguments, CancellationToken::new(), None).await
}

/// Lists a workspace holding `files` (a trailing `/` makes a directory) and compares the text; an
/// expected error is written `error: <message>`.
#[track_caller]
fn check(files: &[&str], arguments: Value, expect: &str) {
    let (dir, context) = fixture();
    for file in files {
        let path = dir.path().join(file);
        if file.ends_with('/') {
            fs::create_dir_all(&path).expect("mkdir");
        } else {
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir parent");
            fs::write(&path, "x").expect("write");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result = runtime.block_on(ls(&context, arguments));
    let actual = if result.is_error { format!("error: {}", result.joined_text()) } else { result.joined_text() };
    let root = context.workspace.root().display().to_string();
    assert_eq!(actual.replace(&root, "<root>"), expect);
}

#[test]
fn lists_sorted_with_directories_marked() {
    check(&["b.txt", "A.txt", ".hidden", "sub/", "a-b", "a/"], json!({}), ".hidden\na/\na-b\nA.txt\nb.txt\nsub/");
    check(&["sub/inner.txt", "sub/deeper/x"], json!({"path": "sub"}), "deeper/\ninner.txt");
    check(&["sub/"], json!({"path": "sub"}), "(empty directory)");
    check(&[], json!({"path": "."}), "(empty directory)");
    check(&["a", "b", "c", "d", "e"], json!({"limit": 2}), "a\nb\n\n[2 entries limit reached. Use limit=4 for more]");
    check(&["a", "b"], json!({"limit": "2"}), "a\nb");
    check(&["a", "b"], json!({"limit": 0}), "a\n\n[1 entries limit reached. Use limit=2 for more]");
}

#[test]
fn errors_name_the_path() {
    check(&["file.txt"], json!({"path": "missing"}), "error: Path not found: missing");
    check(&["file.txt"], json!({"path": "file.txt"}), "error: Not a directory: file.txt");
    check(&[], json!({"path": "../"}), "error: path ../ is outside the workspace <root>; use a path inside it");
    check(&[], json!({"path": "nul\0"}), "error: path \"nul\\0\" contains a NUL byte");
}

#[tokio::test]
async fn symlinks_are_directories_only_inside_the_workspace() {
    let (dir, context) = fixture();
    let outside = tempfile::tempdir().expect("outside dir");
    fs::create_dir(dir.path().join("real")).expect("mkdir");
    symlink("real", dir.path().join("inside")).expect("symlink");
    symlink(outside.path(), dir.path().join("outside")).expect("symlink");
    symlink("missing", dir.path().join("broken")).expect("symlink");
    symlink("inside", dir.path().join("chain")).expect("symlink");
    let result = ls(&context, json!({})).await;
    assert_eq!(result.joined_text(), "broken\nchain/\ninside/\noutside\nreal/");
    for escape in ["outside".to_owned(), outside.path().display().to_string(), "/".to_owned()] {
        assert!(ls(&context, json!({"path": escape})).await.is_error, "{escape}");
    }
}

#[tokio::test]
async fn output_is_cut_at_50_kb() {
    let (dir, context) = fixture();
    for index in 0..600 {
        fs::write(dir.path().join(format!("{index:03}{}", "n".repeat(200))), "").expect("write");
    }
    let result = ls(&context, json!({"limit": 1000})).await;
    let text = result.joined_text();
    assert!(text.ends_with("\n\n[50.0KB limit reached]"), "{}", &text[text.len() - 100..]);
    assert_eq!(result.details["truncation"]["outputLines"], 51200 / 204);
    let result = ls(&context, json!({})).await;
    assert!(
        result
            .joined_text()
            .ends_with("\n\n[500 entries limit reached. Use limit=1000 for more. 50.0KB limit reached]")
    );
    assert_eq!(result.details["entryLimitReached"], 500);
}
