//! Tests of `read`: pi's offsets and footers, images, binary and huge files, and escapes.

use std::fs::{self, File};
use std::io::Write as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use dari_protocol::tools::{ContentBlock, ToolResult};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::tools::test_support::fixture;
use crate::tools::{ToolContext, run_tool};

async fn read(context: &ToolContext, arguments: Value) -> ToolResult {
    run_tool(context, "read", arguments, CancellationToken::new(), None).await
}

/// Reads `content` from `f.txt` with extra `arguments` and compares the text; an expected error
/// is written `error: <message>`.
#[track_caller]
fn check(content: &[u8], arguments: Value, expect: &str) {
    let (dir, context) = fixture();
    fs::write(dir.path().join("f.txt"), content).expect("write fixture");
    let mut arguments = arguments;
    arguments["path"] = json!("f.txt");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result = runtime.block_on(read(&context, arguments));
    let actual = if result.is_error { format!("error: {}", result.joined_text()) } else { result.joined_text() };
    assert_eq!(actual, expect);
}

#[test]
fn offset_and_limit_follow_pi() {
    check(b"a\nb\nc", json!({}), "a\nb\nc");
    check(b"a\nb\nc", json!({"offset": 2}), "b\nc");
    check(b"a\nb\nc", json!({"offset": 2, "limit": 1}), "b\n\n[1 more lines in file. Use offset=3 to continue.]");
    check(
        b"a\nb\nc",
        json!({"offset": "1", "limit": "2"}),
        "a\nb\n\n[1 more lines in file. Use offset=3 to continue.]",
    );
    check(b"a\nb\nc", json!({"limit": 3}), "a\nb\nc");
    check(b"a\nb\nc", json!({"offset": 4}), "error: Offset 4 is beyond end of file (3 lines total)");
    check(b"a\nb\n", json!({"offset": 3}), "");
    check(b"", json!({}), "");
    check(b"a", json!({"offset": 0}), "a");
    check(b"a", json!({"limit": "many"}), "error: invalid arguments for read: expected a whole number, got \"many\"");
}

#[test]
fn long_output_gets_actionable_footers() {
    let many_lines: String = (1..=2500).map(|line| format!("line{line}\n")).collect();
    let first_lines: Vec<String> = (1..=2000).map(|line| format!("line{line}")).collect();
    let expect = format!("{}\n\n[Showing lines 1-2000 of 2501. Use offset=2001 to continue.]", first_lines.join("\n"));
    check(many_lines.as_bytes(), json!({}), &expect);

    let wide_lines = format!("{}\n", "x".repeat(999)).repeat(100);
    let kept = vec!["x".repeat(999); 51].join("\n");
    let expect = format!("{kept}\n\n[Showing lines 3-53 of 101 (50.0KB limit). Use offset=54 to continue.]");
    check(wide_lines.as_bytes(), json!({"offset": 3}), &expect);

    let long_line = format!("short\n{}\nafter", "y".repeat(60_000));
    let expect = "[Line 2 is 58.6KB, exceeds 50.0KB limit. Use bash: sed -n '2p' f.txt | head -c 51200]";
    check(long_line.as_bytes(), json!({"offset": 2}), expect);
}

#[test]
fn content_that_is_not_text() {
    check(b"ok \xff\xfe end\n", json!({}), "ok \u{FFFD}\u{FFFD} end\n");
    check(
        b"abc\0def",
        json!({}),
        "error: Cannot read f.txt: it is a binary file (7 bytes). Use bash to inspect it, e.g. xxd f.txt | head",
    );
    check(b"GIF89a\x01\x00", json!({}), "Read image file [image/gif]");
    check(b"\xFF\xD8\xFF\xE0\x00\x10JFIF", json!({}), "Read image file [image/jpeg]");
    check(b"RIFF\x10\x00\x00\x00WEBPVP8 ", json!({}), "Read image file [image/webp]");
    check(
        b"RIFF\x10\x00\x00\x00WAVE",
        json!({}),
        "error: Cannot read f.txt: it is a binary file (12 bytes). Use bash to inspect it, e.g. xxd f.txt | head",
    );
}

#[tokio::test]
async fn images_come_back_as_image_content() {
    let (dir, context) = fixture();
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR rest of the image";
    fs::write(dir.path().join("picture.dat"), png).expect("write png");
    let result = read(&context, json!({"path": "picture.dat"})).await;
    assert!(!result.is_error, "{result:?}");
    let data = base64::engine::general_purpose::STANDARD.encode(png);
    let expected = vec![
        ContentBlock::Text { text: "Read image file [image/png]".to_owned() },
        ContentBlock::Image { data, mime_type: "image/png".to_owned() },
    ];
    assert_eq!(result.content, expected);
    assert_eq!(result.details["bytes"], png.len());
}

#[tokio::test]
async fn images_over_the_limit_are_refused_without_resizing() {
    let (dir, context) = fixture();
    let mut file = File::create(dir.path().join("big.png")).expect("create");
    file.write_all(b"\x89PNG\r\n\x1a\n").expect("write magic");
    file.set_len(5 * 1024 * 1024).expect("grow");
    let result = read(&context, json!({"path": "big.png"})).await;
    assert!(result.is_error);
    assert_eq!(
        result.joined_text(),
        "Cannot read image big.png: it is 5.0MB (image/png), over the 4.5MB limit for images. Images are not resized; make a smaller copy with bash and read that."
    );
}

#[tokio::test]
async fn a_huge_file_is_streamed() {
    let (dir, context) = fixture();
    let path = dir.path().join("huge.log");
    let mut file = File::create(&path).expect("create");
    // More text than the binary sniff looks at, then a sparse (NUL-filled) tail up to 100 MB.
    for line in 1..=2000 {
        writeln!(file, "line {line:04}").expect("write line");
    }
    file.set_len(100 * 1024 * 1024).expect("grow sparse");
    drop(file);

    let started = Instant::now();
    let result = read(&context, json!({"path": "huge.log", "offset": 5, "limit": 3})).await;
    assert_eq!(
        result.joined_text(),
        "line 0005\nline 0006\nline 0007\n\n[1994 more lines in file. Use offset=8 to continue.]"
    );
    let result = read(&context, json!({"path": "huge.log", "offset": 2001})).await;
    assert_eq!(
        result.joined_text(),
        "[Line 2001 is 100.0MB, exceeds 50.0KB limit. Use bash: sed -n '2001p' huge.log | head -c 51200]"
    );
    assert_eq!(result.details["truncation"]["firstLineExceedsLimit"], true);
    // Generous: two streaming passes take well under a second on an idle machine.
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn truncation_is_reported_in_details() {
    let (dir, context) = fixture();
    fs::write(dir.path().join("f.txt"), "z\n".repeat(3000)).expect("write");
    let result = read(&context, json!({"path": "f.txt"})).await;
    let truncation = &result.details["truncation"];
    assert_eq!(truncation["truncated"], true);
    assert_eq!(truncation["truncatedBy"], "lines");
    assert_eq!(truncation["totalLines"], 3001);
    assert_eq!(truncation["outputLines"], 2000);
    assert_eq!(truncation["maxBytes"], 51200);
}

#[tokio::test]
async fn missing_files_directories_and_fifos() {
    let (dir, context) = fixture();
    fs::create_dir(dir.path().join("sub")).expect("mkdir");
    nix::unistd::mkfifo(&dir.path().join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let cases =
        [("missing.txt", "File not found: missing.txt"), ("sub", "Not a file: sub"), ("pipe", "Not a file: pipe")];
    for (path, expect) in cases {
        let result = read(&context, json!({"path": path})).await;
        assert!(result.is_error, "{path}");
        assert_eq!(result.joined_text(), expect);
    }
}

#[tokio::test]
async fn paths_cannot_escape_the_workspace() {
    let (dir, context) = fixture();
    let outside = tempfile::tempdir().expect("outside dir");
    fs::write(outside.path().join("secret.txt"), "top secret").expect("write secret");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("link.txt")).expect("symlink");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).expect("symlink");
    let escapes = [
        "../secret.txt".to_owned(),
        outside.path().join("secret.txt").display().to_string(),
        "link.txt".to_owned(),
        "out/secret.txt".to_owned(),
        "a\0b".to_owned(),
    ];
    for escape in escapes {
        let result = read(&context, json!({"path": escape})).await;
        assert!(result.is_error, "{escape}");
        assert!(!result.joined_text().contains("top secret"), "{escape}");
    }

    fs::write(dir.path().join("real.txt"), "inside").expect("write");
    std::os::unix::fs::symlink("real.txt", dir.path().join("alias.txt")).expect("symlink");
    assert_eq!(read(&context, json!({"path": "@alias.txt"})).await.joined_text(), "inside");
}
