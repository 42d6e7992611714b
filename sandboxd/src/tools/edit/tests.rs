//! Tests of `edit`: exact and fuzzy edits through the tool, its errors, BOM and CRLF, escapes and
//! the per-file lock.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use dari_protocol::tools::ToolResult;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::tools::test_support::fixture;
use crate::tools::{ToolContext, run_tool};

async fn edit(context: &ToolContext, arguments: Value) -> ToolResult {
    run_tool(context, "edit", arguments, CancellationToken::new(), None).await
}

/// Edits `f.txt`, holding `original`, with `arguments` (the path is added). `expect` is the file
/// afterwards, or `error: <message>` when the edit must fail and leave the file alone.
#[track_caller]
fn check(original: &str, arguments: Value, expect: &str) {
    let (dir, context) = fixture();
    let path = dir.path().join("f.txt");
    fs::write(&path, original).expect("write fixture");
    let mut arguments = arguments;
    arguments["path"] = json!("f.txt");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result = runtime.block_on(edit(&context, arguments));
    let after = fs::read_to_string(&path).expect("read back");
    if result.is_error {
        assert_eq!(format!("error: {}", result.joined_text()), expect);
        assert_eq!(after, original, "a failed edit changed the file");
    } else {
        assert_eq!(after, expect, "{}", result.joined_text());
    }
}

fn one(old_text: &str, new_text: &str) -> Value {
    json!({"edits": [{"oldText": old_text, "newText": new_text}]})
}

#[test]
fn exact_edits() {
    check("one\ntwo\nthree\n", one("two", "2"), "one\n2\nthree\n");
    check("one\ntwo\n", json!({"oldText": "one", "newText": "1"}), "1\ntwo\n");
    check("one\ntwo\n", json!({"edits": r#"[{"oldText":"two","newText":"2"}]"#}), "one\n2\n");
    check(
        "one\ntwo\n",
        json!({"edits": [{"oldText": "one", "newText": "1"}], "oldText": "two", "newText": "2"}),
        "1\n2\n",
    );
    // Every oldText is matched against the original, not against the result of earlier edits.
    check("a b c", json!({"edits": [{"oldText": "a", "newText": "b"}, {"oldText": "b", "newText": "c"}]}), "b c c");
    check("ab", json!({"edits": [{"oldText": "b", "newText": "B"}, {"oldText": "a", "newText": "A"}]}), "AB");
    check("keep\ndrop me\n", one("drop me\n", ""), "keep\n");
}

#[test]
fn edit_errors() {
    check("x", one("", "y"), "error: edits[0].oldText must not be empty");
    check(
        "x y x",
        one("x", "z"),
        "error: Found 2 occurrences of edits[0] in f.txt. The text must be unique. Please provide more context to make it unique.",
    );
    check(
        "abcdef",
        json!({"edits": [{"oldText": "abc", "newText": "1"}, {"oldText": "cde", "newText": "2"}]}),
        "error: edits[0] and edits[1] overlap in f.txt. Merge them into one edit.",
    );
    check(
        "abcdef",
        json!({"edits": [{"oldText": "def", "newText": "1"}, {"oldText": "f", "newText": "2"}, {"oldText": "a", "newText": "3"}]}),
        "error: edits[0] and edits[1] overlap in f.txt. Merge them into one edit.",
    );
    check("same", one("same", "same"), "error: No changes made to f.txt: the replacement produced identical content.");
    check(
        "fn main() {\n    let value = 1;\n    run(value);\n}\n",
        one("    let valeu = 1;\n    run(valeu);", "x"),
        "error: Could not find edits[0] in f.txt. The old text must match exactly including all whitespace and newlines.\n\
         Closest match is around line 2:\n    let value = 1;\n    run(value);",
    );
    check(
        "nothing alike\n",
        one("zzz", "x"),
        "error: Could not find edits[0] in f.txt. The old text must match exactly including all whitespace and newlines.",
    );
    check("x", json!({"oldText": "x"}), "error: invalid arguments for edit: oldText was given without newText");
    check("x", json!({}), "error: invalid arguments for edit: give at least one edit in edits: [{oldText, newText}]");
    check(
        "x",
        json!({"edits": "not json"}),
        "error: invalid arguments for edit: edits is a string but not a JSON array of {oldText, newText}: expected ident at line 1 column 2",
    );
}

#[test]
fn bom_and_line_endings_are_kept() {
    check("\u{FEFF}one\r\ntwo\r\nthree\r\n", one("two\nthree", "2\n3"), "\u{FEFF}one\r\n2\r\n3\r\n");
    check("one\r\ntwo\r\n", one("one\r\ntwo", "1\r\n2"), "1\r\n2\r\n");
    check("\u{FEFF}lf\nfile\n", one("file", "FILE"), "\u{FEFF}lf\nFILE\n");
    // An LF file keeps a stray CRLF line it did not touch.
    check("a\nb\r\nc\n", one("c", "C"), "a\nb\r\nC\n");
    // ... and the fuzzy match (which drops the trailing `\r`) still finds a line that has one.
    check("a\nb\r\nc\n", one("b\nc", "B\nC"), "a\nB\nC\n");
}

#[test]
fn fuzzy_edits_rewrite_only_the_matched_lines() {
    let original = "say(“hi”);  \nlet a = ‘x’;   \ntail — “kept”\u{a0} \n";
    check(original, one("let a = 'x';", "let a = 'y';"), "say(“hi”);  \nlet a = 'y';   \ntail — “kept”\u{a0} \n");
    check("    x = “a” – b\nrest ‘q’\n", one("x = \"a\" - b", "x = 1"), "    x = 1\nrest ‘q’\n");
    check("\u{a0}\u{a0}foo();\nbar  \n", one("  foo();", "  baz();"), "  baz();\nbar  \n");
    check(
        "‘a’\n‘a’\n",
        one("'a'", "b"),
        "error: Found 2 occurrences of edits[0] in f.txt. The text must be unique. Please provide more context to make it unique.",
    );
    // A fuzzy edit and an exact edit on the same line overlap, because fuzzy edits replace lines.
    check(
        "‘a’ b\n",
        json!({"edits": [{"oldText": "'a'", "newText": "1"}, {"oldText": "b", "newText": "2"}]}),
        "error: edits[0] and edits[1] overlap in f.txt. Merge them into one edit.",
    );
}

#[test]
fn content_that_cannot_be_edited() {
    check("a\0b", one("a", "b"), "error: Cannot edit f.txt: it is a binary file (3 bytes). Use bash to change it.");
    let (dir, context) = fixture();
    fs::write(dir.path().join("latin1.txt"), b"caf\xe9\n").expect("write");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result = runtime.block_on(edit(&context, json!({"path": "latin1.txt", "oldText": "caf", "newText": "x"})));
    assert_eq!(
        result.joined_text(),
        "Cannot edit latin1.txt: it is not valid UTF-8 (invalid byte at offset 3). Use bash to change it."
    );
    let result = runtime.block_on(edit(&context, json!({"path": "nope.txt", "oldText": "a", "newText": "b"})));
    assert_eq!(result.joined_text(), "File not found: nope.txt");
    assert_eq!(fs::read(dir.path().join("latin1.txt")).expect("read"), b"caf\xe9\n");
}

#[tokio::test]
async fn details_carry_a_patch_and_the_first_changed_line() {
    let (dir, context) = fixture();
    let path = dir.path().join("f.txt");
    fs::write(&path, "one\ntwo\nthree\n").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    let result = edit(
        &context,
        json!({"path": "f.txt", "edits": [{"oldText": "two", "newText": "2"}, {"oldText": "three", "newText": "3"}]}),
    )
    .await;
    assert_eq!(result.joined_text(), "Successfully replaced 2 block(s) in f.txt.");
    assert_eq!(result.details["firstChangedLine"], 2);
    assert_eq!(result.details["patch"], "--- f.txt\n+++ f.txt\n@@ -1,3 +1,3 @@\n one\n-two\n-three\n+2\n+3\n");
    assert_eq!(fs::metadata(&path).expect("stat").permissions().mode() & 0o7777, 0o640);
}

#[tokio::test]
async fn paths_cannot_escape_the_workspace() {
    let (dir, context) = fixture();
    let outside = tempfile::tempdir().expect("outside dir");
    let secret = outside.path().join("secret.txt");
    fs::write(&secret, "keep").expect("write secret");
    std::os::unix::fs::symlink(&secret, dir.path().join("link.txt")).expect("symlink");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).expect("symlink");
    let escapes = [
        "link.txt".to_owned(),
        "out/secret.txt".to_owned(),
        "../secret.txt".to_owned(),
        secret.display().to_string(),
        "a\0b".to_owned(),
    ];
    for escape in escapes {
        let result = edit(&context, json!({"path": escape, "oldText": "keep", "newText": "pwned"})).await;
        assert!(result.is_error, "{escape}: {result:?}");
    }
    assert_eq!(fs::read_to_string(&secret).expect("read secret"), "keep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_edits_to_one_file_all_land() {
    let (dir, context) = fixture();
    let path = dir.path().join("shared.txt");
    let lines: Vec<String> = (0..16).map(|line| format!("line {line:02}")).collect();
    for _round in 0..10 {
        fs::write(&path, lines.join("\n")).expect("write");
        let tasks: Vec<_> = (0..lines.len())
            .map(|line| {
                let context = context.clone();
                let arguments = json!({"path": "shared.txt", "oldText": format!("line {line:02}"), "newText": format!("LINE {line:02}")});
                tokio::spawn(async move { edit(&context, arguments).await })
            })
            .collect();
        for task in tasks {
            let result = task.await.expect("edit task");
            assert!(!result.is_error, "{result:?}");
        }
        let expected: Vec<String> = (0..lines.len()).map(|line| format!("LINE {line:02}")).collect();
        assert_eq!(fs::read_to_string(&path).expect("read"), expected.join("\n"));
    }
}
