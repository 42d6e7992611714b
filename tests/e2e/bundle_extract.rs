//! The bundle round trip with the real binaries: `dari deploy --dry-run --save-archive` packs,
//! `sandboxd bundle extract` unpacks, and hostile archives are refused by the daemon.

use std::io::Write;

use dari_tests::binaries::{dari, sandboxd};
use dari_tests::workspace_root;
use flate2::Compression;
use flate2::write::GzEncoder;

fn path_str(path: &std::path::Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

#[test]
fn a_packed_example_extracts_to_the_same_files() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let archive = scratch.path().join("bundle.tar.gz");
    let example = workspace_root().join("examples/pi-agent");
    let output = dari(&["deploy", "--dry-run", "--quiet", "--save-archive", path_str(&archive), path_str(&example)]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("plan JSON");
    let sha256 = plan["sha256"].as_str().expect("sha256");

    let into = scratch.path().join("source-bundle");
    let output = sandboxd(&[
        "bundle",
        "extract",
        "--archive",
        path_str(&archive),
        "--into",
        path_str(&into),
        "--sha256",
        sha256,
        "--read-only",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    for file in plan["files"].as_array().expect("files") {
        let path = file["path"].as_str().expect("path");
        let original = std::fs::read(example.join(path)).expect("read original");
        let extracted = std::fs::read(into.join(path)).expect("read extracted");
        assert_eq!(original, extracted, "{path}");
    }
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(into.join("dari.yml")).expect("stat").permissions());
    assert_eq!(mode & 0o777, 0o444, "read-only extraction");
}

/// A gzip'd tar with one raw entry, written by hand so that the name can be anything.
fn archive_with_entry(name: &[u8], entry_type: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(entry_type);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    let mut tar = Vec::new();
    tar.extend_from_slice(header.as_bytes());
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(&tar).expect("gzip");
    gzip.finish().expect("gzip")
}

#[test]
fn the_daemon_refuses_hostile_archives_and_writes_nothing() {
    let cases: [(&str, Vec<u8>); 4] = [
        ("../evil", archive_with_entry(b"../evil", tar::EntryType::Regular, b"", b"x")),
        ("/etc/evil", archive_with_entry(b"/etc/evil", tar::EntryType::Regular, b"", b"x")),
        ("link", archive_with_entry(b"link", tar::EntryType::Symlink, b"/etc/passwd", b"")),
        ("hard", archive_with_entry(b"hard", tar::EntryType::Link, b"/etc/passwd", b"")),
    ];
    for (entry, bytes) in cases {
        let scratch = tempfile::tempdir().expect("temp dir");
        let archive = scratch.path().join("bundle.tar.gz");
        std::fs::write(&archive, bytes).expect("write archive");
        let into = scratch.path().join("out");
        let output = sandboxd(&["bundle", "extract", "--archive", path_str(&archive), "--into", path_str(&into)]);
        assert_eq!(output.status.code(), Some(1), "{entry} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(entry), "the error names {entry}: {stderr}");
        let left: Vec<_> =
            std::fs::read_dir(scratch.path()).expect("list").map(|entry| entry.expect("entry").file_name()).collect();
        assert_eq!(left, ["bundle.tar.gz"], "nothing written for {entry}");
    }
}

#[test]
fn a_wrong_sha256_is_refused() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let archive = scratch.path().join("bundle.tar.gz");
    std::fs::write(&archive, archive_with_entry(b"dari.yml", tar::EntryType::Regular, b"", b"name: x\n"))
        .expect("write");
    let into = scratch.path().join("out");
    let wrong = "0".repeat(64);
    let output = sandboxd(&[
        "bundle",
        "extract",
        "--archive",
        path_str(&archive),
        "--into",
        path_str(&into),
        "--sha256",
        &wrong,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains(&wrong));
    assert!(!into.exists());
}
