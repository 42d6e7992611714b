//! Tests of `write`: real byte counts, parents, kept permissions, atomicity and escapes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dari_protocol::tools::ToolResult;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::tools::test_support::fixture;
use crate::tools::{ToolContext, run_tool};

async fn write(context: &ToolContext, arguments: Value) -> ToolResult {
    run_tool(context, "write", arguments, CancellationToken::new(), None).await
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// The names in a directory, to see that no temporary file is left behind.
fn names(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(directory)
        .expect("read dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Writes `content` to `path` in a fresh workspace and compares the result text; an expected
/// error is written `error: <message>`.
#[track_caller]
fn check(path: &str, content: &str, expect: &str) {
    let (dir, context) = fixture();
    fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result = runtime.block_on(write(&context, json!({"path": path, "content": content})));
    let actual = if result.is_error { format!("error: {}", result.joined_text()) } else { result.joined_text() };
    let root = context.workspace.root().display().to_string();
    assert_eq!(actual.replace(&root, "<root>"), expect);
    if !result.is_error {
        assert_eq!(fs::read_to_string(context.workspace.resolve(path).expect("resolve")).expect("read back"), content);
    }
}

#[test]
fn reports_real_utf8_bytes_and_creates_parents() {
    check("a.txt", "hello", "Successfully wrote 5 bytes to a.txt");
    check("a.txt", "héllo 😀", "Successfully wrote 11 bytes to a.txt");
    check("deep/er/new.txt", "x\n", "Successfully wrote 2 bytes to deep/er/new.txt");
    check("@sub/./b.txt", "", "Successfully wrote 0 bytes to sub/b.txt");
    check("sub", "x", "error: Cannot write sub: it is a directory");
    check("", "x", "error: Cannot write .: it is the workspace root");
    check("sub/../../x", "x", "error: path sub/../../x is outside the workspace <root>; use a path inside it");
}

#[tokio::test]
async fn overwrite_keeps_permissions_and_leaves_no_temporary_file() {
    let (dir, context) = fixture();
    let script = dir.path().join("run.sh");
    fs::write(&script, "old").expect("write");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o750)).expect("chmod");
    let result = write(&context, json!({"path": "run.sh", "content": "#!/bin/sh\n"})).await;
    assert!(!result.is_error, "{result:?}");
    assert_eq!(fs::read_to_string(&script).expect("read"), "#!/bin/sh\n");
    assert_eq!(mode(&script), 0o750);
    assert_eq!(names(dir.path()), ["run.sh"]);

    fs::set_permissions(&script, fs::Permissions::from_mode(0o4600)).expect("chmod");
    write(&context, json!({"path": "run.sh", "content": "again"})).await;
    assert_eq!(mode(&script), 0o4600);
}

#[tokio::test]
async fn symlinks_inside_are_written_through_and_symlinks_out_refused() {
    let (dir, context) = fixture();
    let outside = tempfile::tempdir().expect("outside dir");
    let secret = outside.path().join("secret.txt");
    fs::write(&secret, "keep").expect("write secret");
    std::os::unix::fs::symlink(&secret, dir.path().join("link.txt")).expect("symlink");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).expect("symlink");
    let escapes = [
        "link.txt".to_owned(),
        "out/secret.txt".to_owned(),
        "out/new/file.txt".to_owned(),
        "../escape.txt".to_owned(),
        secret.display().to_string(),
        "nul\0.txt".to_owned(),
    ];
    for escape in escapes {
        let result = write(&context, json!({"path": escape, "content": "pwned"})).await;
        assert!(result.is_error, "{escape}: {result:?}");
    }
    assert_eq!(fs::read_to_string(&secret).expect("read secret"), "keep");
    assert_eq!(names(outside.path()), ["secret.txt"]);

    fs::write(dir.path().join("real.txt"), "old").expect("write");
    std::os::unix::fs::symlink("real.txt", dir.path().join("alias.txt")).expect("symlink");
    let result = write(&context, json!({"path": "alias.txt", "content": "new"})).await;
    assert_eq!(result.joined_text(), "Successfully wrote 3 bytes to real.txt");
    assert_eq!(fs::read_to_string(dir.path().join("real.txt")).expect("read"), "new");
    assert!(fs::symlink_metadata(dir.path().join("alias.txt")).expect("lstat").file_type().is_symlink());
}

#[test]
fn a_symlink_that_appears_at_the_target_is_replaced_not_followed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("outside dir");
    let secret = outside.path().join("secret.txt");
    fs::write(&secret, "keep").expect("write secret");
    let target = dir.path().join("target.txt");
    std::os::unix::fs::symlink(&secret, &target).expect("symlink");
    super::write_atomically(&target, b"mine").expect("write");
    assert_eq!(fs::read_to_string(&secret).expect("read secret"), "keep");
    assert!(fs::symlink_metadata(&target).expect("lstat").is_file());
    assert_eq!(fs::read_to_string(&target).expect("read"), "mine");
}

#[test]
fn a_directory_swapped_for_a_symlink_out_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("outside dir");
    let root = fs::canonicalize(dir.path()).expect("canonical root");
    // Resolution saw `root/sub/file.txt` with `sub` missing; meanwhile `sub` became a link out.
    std::os::unix::fs::symlink(outside.path(), root.join("sub")).expect("symlink");
    let error = super::write_inside(&root, &root.join("sub/file.txt"), b"x").expect_err("escape");
    assert_eq!(error.to_string(), "its directory is outside the workspace");
    assert!(names(outside.path()).is_empty());
}
