use std::fs;
use std::io::Read;
use std::time::{Duration, SystemTime};

use flate2::read::GzDecoder;

use super::{PackError, pack, sha256_hex};
use crate::test_support::{pack_tree, write_tree};
use crate::{BundleLimits, select_files};

const TREE: &[(&str, &[u8], u32)] = &[
    ("dari.yml", b"name: demo\n", 0o644),
    ("src/main.py", b"print('hi')\n", 0o600),
    ("tools/run.sh", b"#!/bin/sh\necho hi\n", 0o700),
];

/// One archive entry as the tar crate reads it back.
#[derive(Debug, PartialEq, Eq)]
struct EntrySummary {
    path: String,
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
    owner_names: (Vec<u8>, Vec<u8>),
    contents: Vec<u8>,
}

fn entries(archive: &[u8]) -> Vec<EntrySummary> {
    let mut tar = tar::Archive::new(GzDecoder::new(archive));
    let mut summaries = Vec::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
        let header = entry.header();
        let mut summary = EntrySummary {
            path: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
            mode: header.mode().unwrap(),
            mtime: header.mtime().unwrap(),
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
            owner_names: (
                header.username_bytes().unwrap_or_default().to_vec(),
                header.groupname_bytes().unwrap_or_default().to_vec(),
            ),
            contents: Vec::new(),
        };
        entry.read_to_end(&mut summary.contents).unwrap();
        summaries.push(summary);
    }
    summaries
}

#[test]
fn packing_the_same_tree_twice_gives_the_same_bytes() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    write_tree(first.path(), TREE);
    write_tree(second.path(), TREE);
    let first_bundle = pack_tree(first.path());
    assert_eq!(first_bundle, pack_tree(first.path()));
    assert_eq!(first_bundle, pack_tree(second.path()));
    assert_eq!(first_bundle.sha256, sha256_hex(&first_bundle.archive));
    assert_eq!(first_bundle.size_bytes, first_bundle.archive.len() as u64);
    assert_eq!(first_bundle.file_count, 3);
    assert_eq!(first_bundle.uncompressed_bytes, 11 + 12 + 18);
}

#[test]
fn mtimes_do_not_change_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), TREE);
    let before = pack_tree(dir.path());
    for (path, _, _) in TREE {
        let file = fs::File::options().write(true).open(dir.path().join(path)).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)).unwrap();
    }
    assert_eq!(before.sha256, pack_tree(dir.path()).sha256);
}

#[test]
fn changing_one_byte_changes_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), TREE);
    let before = pack_tree(dir.path());
    fs::write(dir.path().join("src/main.py"), b"print('hI')\n").unwrap();
    assert_ne!(before.sha256, pack_tree(dir.path()).sha256);
}

#[test]
fn entries_are_sorted_and_carry_no_machine_details() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), TREE);
    let bundle = pack_tree(dir.path());
    let entry = |path: &str, mode, contents: &[u8]| EntrySummary {
        path: path.to_owned(),
        mode,
        mtime: 0,
        uid: 0,
        gid: 0,
        owner_names: (Vec::new(), Vec::new()),
        contents: contents.to_vec(),
    };
    assert_eq!(
        entries(&bundle.archive),
        vec![
            entry("dari.yml", 0o644, b"name: demo\n"),
            entry("src/main.py", 0o644, b"print('hi')\n"),
            entry("tools/run.sh", 0o755, b"#!/bin/sh\necho hi\n"),
        ]
    );
    // Gzip header: no FNAME flag, mtime 0, OS "unknown".
    assert_eq!(&bundle.archive[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&bundle.archive[4..8], &[0, 0, 0, 0]);
    assert_eq!(bundle.archive[9], 255);
}

#[test]
fn any_execute_bit_gives_0755() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("group-exec", b"x", 0o610), ("other-exec", b"x", 0o601), ("plain", b"x", 0o666)]);
    let modes: Vec<(String, u32)> =
        entries(&pack_tree(dir.path()).archive).into_iter().map(|entry| (entry.path, entry.mode)).collect();
    assert_eq!(
        modes,
        vec![("group-exec".to_owned(), 0o755), ("other-exec".to_owned(), 0o755), ("plain".to_owned(), 0o644)]
    );
}

#[test]
fn long_paths_use_gnu_long_names() {
    let dir = tempfile::tempdir().unwrap();
    let long_path = format!("{}/{}.txt", "d".repeat(90), "f".repeat(60));
    write_tree(dir.path(), &[(&long_path, b"deep", 0o644)]);
    let packed = entries(&pack_tree(dir.path()).archive);
    assert_eq!(packed.len(), 1);
    assert_eq!(packed[0].path, long_path);
    assert_eq!(packed[0].contents, b"deep");
}

#[test]
fn a_file_replaced_by_a_symlink_after_selection_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), TREE);
    let selected = select_files(dir.path(), &BundleLimits::DEFAULT).unwrap();
    fs::remove_file(dir.path().join("src/main.py")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("src/main.py")).unwrap();
    let error = pack(&selected, &BundleLimits::DEFAULT).unwrap_err();
    assert!(matches!(error, PackError::Symlink { ref path } if path == "src/main.py"), "{error:?}");
    assert!(error.to_string().contains("src/main.py"), "{error}");
}

#[test]
fn a_file_that_grew_past_the_limit_after_selection_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), TREE);
    let limits = BundleLimits { max_file_bytes: 20, ..BundleLimits::DEFAULT };
    let selected = select_files(dir.path(), &limits).unwrap();
    fs::write(dir.path().join("dari.yml"), [b'x'; 21]).unwrap();
    let error = pack(&selected, &limits).unwrap_err();
    assert_eq!(
        error.to_string(),
        "dari.yml is 21 bytes, over the 20 bytes limit for one file; add it to .gitignore or remove it"
    );
}

#[test]
fn an_archive_over_the_limit_is_refused_with_its_real_size() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), TREE);
    let real_size = pack_tree(dir.path()).size_bytes;
    let limits = BundleLimits { max_archive_bytes: 100, ..BundleLimits::DEFAULT };
    let selected = select_files(dir.path(), &limits).unwrap();
    let error = pack(&selected, &limits).unwrap_err();
    assert!(matches!(error, PackError::ArchiveTooLarge { size, limit: 100, .. } if size == real_size), "{error:?}");
    assert!(
        error.to_string().contains(&format!("compresses to {real_size} bytes, over the 100 bytes limit")),
        "{error}"
    );
}

#[test]
fn sha256_hex_is_lowercase_hex() {
    assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
