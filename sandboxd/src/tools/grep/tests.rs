use dari_protocol::tools::ToolResult;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::tools::test_support::workspace;
use crate::tools::{BashConfig, FileLocks, ToolContext, Workspace, run_tool};

async fn grep(context: &ToolContext, arguments: Value) -> ToolResult {
    run_tool(context, "grep", arguments, CancellationToken::new(), None).await
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
async fn patterns_flags_and_globs() {
    let (_dir, context) = workspace(&[
        ("a.txt", b"foo\nFOO\nfo+ literal\nbar\n"),
        ("src/app.ts", b"const foo = 1;\n"),
        ("src/app.spec.ts", b"test(foo)\n"),
        ("src/deep/x.spec.ts", b"foo deep\n"),
        ("lib/y.ts", b"foo lib\n"),
    ]);
    let cases = [
        (
            json!({"pattern": "fo+"}),
            "a.txt:1: foo\na.txt:3: fo+ literal\nlib/y.ts:1: foo lib\nsrc/app.spec.ts:1: test(foo)\nsrc/app.ts:1: const foo = 1;\nsrc/deep/x.spec.ts:1: foo deep",
        ),
        (json!({"pattern": "fo+", "literal": true}), "a.txt:3: fo+ literal"),
        (json!({"pattern": "^foo$", "ignoreCase": true, "path": "a.txt"}), "a.txt:1: foo\na.txt:2: FOO"),
        (json!({"pattern": "^foo$", "ignoreCase": "false", "path": "a.txt"}), "a.txt:1: foo"),
        (
            json!({"pattern": "foo", "glob": "*.spec.ts"}),
            "src/app.spec.ts:1: test(foo)\nsrc/deep/x.spec.ts:1: foo deep",
        ),
        (json!({"pattern": "foo", "glob": "**/deep/*.ts"}), "src/deep/x.spec.ts:1: foo deep"),
        (json!({"pattern": "foo", "glob": "src/*.ts"}), "src/app.spec.ts:1: test(foo)\nsrc/app.ts:1: const foo = 1;"),
        (json!({"pattern": "foo", "path": "src", "glob": "!*.spec.ts"}), "app.ts:1: const foo = 1;"),
        (json!({"pattern": "foo", "path": "src/deep/x.spec.ts"}), "x.spec.ts:1: foo deep"),
        (json!({"pattern": "nowhere"}), "No matches found"),
    ];
    for (arguments, expected) in cases {
        check(&grep(&context, arguments).await, expected);
    }
}

#[tokio::test]
async fn gitignore_is_honoured_outside_git_and_hidden_files_are_searched() {
    let (dir, context) = workspace(&[
        (".gitignore", b"ignored/\n*.log\n"),
        ("ignored/a.txt", b"needle\n"),
        ("sub/.gitignore", b"local.txt\n"),
        ("sub/local.txt", b"needle\n"),
        ("sub/kept.txt", b"needle\n"),
        ("app.log", b"needle\n"),
        (".hidden/secret.txt", b"needle\n"),
    ]);
    assert!(!dir.path().join(".git").exists());
    check(&grep(&context, json!({"pattern": "needle"})).await, ".hidden/secret.txt:1: needle\nsub/kept.txt:1: needle");
    // The root's .gitignore still applies when searching below it.
    std::fs::write(dir.path().join("sub/x.log"), "needle\n").expect("write");
    check(&grep(&context, json!({"pattern": "needle", "path": "sub"})).await, "kept.txt:1: needle");
}

#[tokio::test]
async fn git_directory_is_skipped() {
    let (_dir, context) =
        workspace(&[(".git/config", b"needle\n"), (".git/HEAD", b"needle\n"), ("a.txt", b"needle\n")]);
    check(&grep(&context, json!({"pattern": "needle"})).await, "a.txt:1: needle");
}

#[tokio::test]
async fn context_lines_merge_and_are_marked() {
    let (_dir, context) = workspace(&[("a.txt", b"one\ntwo\nthree\nfour\nfive\nsix\nseven\n"), ("b.txt", b"three\n")]);
    let cases = [
        (json!({"pattern": "three", "context": 1, "path": "a.txt"}), "a.txt-2- two\na.txt:3: three\na.txt-4- four"),
        (
            json!({"pattern": "three|five", "context": "1"}),
            "a.txt-2- two\na.txt:3: three\na.txt-4- four\na.txt:5: five\na.txt-6- six\nb.txt:1: three",
        ),
        // The limit keeps the first match and shows the next one as its context.
        (
            json!({"pattern": "three|five", "context": 2, "limit": 1}),
            "a.txt-1- one\na.txt-2- two\na.txt:3: three\na.txt-4- four\na.txt-5- five\n\n\
             [1 matches limit reached. Use limit=2 for more, or refine pattern]",
        ),
    ];
    for (arguments, expected) in cases {
        check(&grep(&context, arguments).await, expected);
    }
}

#[tokio::test]
async fn limits_and_footers_are_exact() {
    let many: String = (1..=150).map(|n| format!("hit {n}\n")).collect();
    let long_line = format!("{}\n", "x".repeat(600));
    let long_lines = long_line.repeat(200);
    let (_dir, context) = workspace(&[
        ("many.txt", many.as_bytes()),
        ("two.txt", b"hit\nhit\n"),
        ("long.txt", long_line.as_bytes()),
        ("longs.txt", long_lines.as_bytes()),
    ]);
    let result = grep(&context, json!({"pattern": "hit", "path": "many.txt"})).await;
    let text = result.joined_text();
    assert_eq!(text.lines().count(), 102, "100 matches, a blank line and the footer");
    assert!(text.starts_with("many.txt:1: hit 1\n") && text.contains("many.txt:100: hit 100\n\n"));
    assert!(text.ends_with("\n\n[100 matches limit reached. Use limit=200 for more, or refine pattern]"));
    assert_eq!(result.details["matchCount"], 100);
    assert_eq!(result.details["limitReached"], true);

    check(
        &grep(&context, json!({"pattern": "hit", "path": "two.txt", "limit": 2})).await,
        "two.txt:1: hit\ntwo.txt:2: hit",
    );
    check(
        &grep(&context, json!({"pattern": "hit", "path": "two.txt", "limit": 0})).await,
        "two.txt:1: hit\n\n[1 matches limit reached. Use limit=2 for more, or refine pattern]",
    );
    let cut = format!("long.txt:1: {}... [truncated]", "x".repeat(500));
    check(
        &grep(&context, json!({"pattern": "x", "path": "long.txt"})).await,
        &format!("{cut}\n\n[Some lines truncated to 500 chars. Use read tool to see full lines]"),
    );

    let result = grep(&context, json!({"pattern": "x", "path": "longs.txt"})).await;
    let text = result.joined_text();
    assert!(text.len() < 51200 + 300, "head-truncated to 50 KB");
    assert!(text.ends_with(
        "\n\n[100 matches limit reached. Use limit=200 for more, or refine pattern. 50.0KB limit reached. \
         Some lines truncated to 500 chars. Use read tool to see full lines]"
    ));
    assert_eq!(result.details["truncation"]["truncatedBy"], "bytes");
    assert_eq!(result.details["linesTruncated"], true);
}

#[tokio::test]
async fn odd_content_and_patterns_never_crash() {
    let (_dir, context) = workspace(&[
        ("latin1.txt", b"caf\xe9 needle\n"),
        ("binary.bin", b"needle\0\x01\x02"),
        ("crlf.txt", b"needle\r\nnext\r\n"),
    ]);
    check(&grep(&context, json!({"pattern": "needle"})).await, "crlf.txt:1: needle\nlatin1.txt:1: caf\u{FFFD} needle");
    check(&grep(&context, json!({"pattern": "needle", "path": "binary.bin"})).await, "No matches found");
    for arguments in [json!({"pattern": "a\u{0}b"}), json!({"pattern": "\u{0}", "literal": true})] {
        let result = grep(&context, arguments).await;
        assert!(result.is_error || result.joined_text() == "No matches found", "{}", result.joined_text());
    }
    check_error(&grep(&context, json!({"pattern": "foo("})).await, "\"foo(\"");
    check_error(&grep(&context, json!({"pattern": "x", "glob": "a[b"})).await, "a[b");
    check_error(&grep(&context, json!({"pattern": "x", "path": "missing"})).await, "Path not found: missing");
    check_error(&grep(&context, json!({"pattern": "x", "limit": "many"})).await, "invalid arguments for grep");
}

#[tokio::test]
async fn escapes_are_refused_and_outside_symlinks_not_followed() {
    let outside = tempfile::tempdir().expect("create temp dir");
    std::fs::write(outside.path().join("secret.txt"), "needle\n").expect("write");
    let (dir, context) = workspace(&[("a.txt", b"needle\n")]);
    std::os::unix::fs::symlink(outside.path(), dir.path().join("outside")).expect("symlink");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("secret-link.txt")).expect("symlink");
    check(&grep(&context, json!({"pattern": "needle"})).await, "a.txt:1: needle");
    let outside_path = outside.path().to_str().expect("utf-8 temp path");
    for path in ["..", "../x", outside_path, "outside", "outside/secret.txt", "secret-link.txt"] {
        check_error(&grep(&context, json!({"pattern": "needle", "path": path})).await, "outside the workspace");
    }
}

#[tokio::test]
async fn cancelled_search_is_aborted() {
    let (_dir, context) = workspace(&[("a.txt", b"needle\n")]);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let result = run_tool(&context, "grep", json!({"pattern": "needle"}), cancel, None).await;
    check_error(&result, "Operation aborted");
}

/// A tree of 2,000 files in 40 directories; every third file holds two matching lines. The
/// result must be the same, in path then line order, however the threads interleave.
#[tokio::test]
async fn large_tree_is_searched_completely_and_in_order() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let mut expected = Vec::new();
    for dir_idx in 0..40 {
        for file_idx in 0..50 {
            let relative = format!("d{dir_idx:02}/f{file_idx:02}.txt");
            let path = dir.path().join(&relative);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            let content = if (dir_idx * 50 + file_idx) % 3 == 0 {
                expected.push(format!("{relative}:2: needle {dir_idx} {file_idx}"));
                expected.push(format!("{relative}:4: needle again"));
                format!("a\nneedle {dir_idx} {file_idx}\nb\nneedle again\n")
            } else {
                "nothing here\n".to_owned()
            };
            std::fs::write(path, content).expect("write");
        }
    }
    let workspace = Workspace::new(dir.path()).expect("open workspace");
    let bash = BashConfig::for_workspace(workspace.root());
    let context = ToolContext { workspace, locks: FileLocks::default(), bash };
    assert_eq!(expected.len(), 1334);

    let result = grep(&context, json!({"pattern": "needle", "limit": 5000})).await;
    assert_eq!(result.details["matchCount"], 1334);
    assert_eq!(result.joined_text(), expected.join("\n"));

    let result = grep(&context, json!({"pattern": "needle"})).await;
    let first_hundred = expected[..100].join("\n");
    check(
        &result,
        &format!("{first_hundred}\n\n[100 matches limit reached. Use limit=200 for more, or refine pattern]"),
    );
}
