//! Archives built to escape the destination, exhaust resources or smuggle special files. Each one
//! must be refused by `extract` and by `read_archive`, with the entry named, and must leave
//! nothing behind.

use std::fs;

use tar::EntryType;

use super::{RawTar, gzip, options};
use crate::BundleLimits;
use crate::extract::{ExtractOptions, extract, read_archive};
use crate::test_support::{pack_tree, write_tree};

/// Checks that both `extract` and `read_archive` refuse `archive` with a message containing each
/// of `expect`, and that extraction left neither the destination nor a partial directory.
#[track_caller]
fn check(archive: &[u8], limits: &BundleLimits, expect: &[&str]) {
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("bundle");
    let error = extract(archive, &dest, &options(limits)).unwrap_err();
    let message = error.to_string();
    for part in expect {
        assert!(message.contains(part), "extract: {message:?} lacks {part:?}");
    }
    assert!(!dest.exists(), "dest exists after: {message}");
    let left: Vec<_> = fs::read_dir(target.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind {left:?} after: {message}");

    let error = read_archive(archive, limits, u64::MAX).unwrap_err();
    let message = error.to_string();
    for part in expect {
        assert!(message.contains(part), "read_archive: {message:?} lacks {part:?}");
    }
}

fn defaults() -> BundleLimits {
    BundleLimits::DEFAULT
}

/// Bytes that deflate cannot shrink much, so cutting the gzip stream cuts real data.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

#[test]
fn paths_that_escape_the_destination_are_refused() {
    let ok = b"fine";
    check(
        &RawTar::new().file("ok.txt", ok).file("../evil", b"x").finish(),
        &defaults(),
        &["refuse entry ../evil", "'..'"],
    );
    check(&RawTar::new().file("a/../../evil", b"x").finish(), &defaults(), &["refuse entry a/../../evil", "'..'"]);
    check(&RawTar::new().file("/etc/evil", b"x").finish(), &defaults(), &["refuse entry /etc/evil", "absolute"]);
    check(&RawTar::new().file("./a", b"x").finish(), &defaults(), &["refuse entry ./a", "'.'"]);
    check(
        &RawTar::new().file("a\\..\\evil", b"x").finish(),
        &defaults(),
        &["refuse entry a\\\\..\\\\evil", "backslash"],
    );
    check(
        &RawTar::new().entry(b"bad\xff", EntryType::Regular, 1, b"x", b"").finish(),
        &defaults(),
        &["refuse entry bad\u{fffd}", "not valid UTF-8"],
    );
    let long_evil = format!("../{}", "x".repeat(200));
    let long_name = format!("{long_evil}\0");
    let archive = RawTar::new()
        .entry(b"././@LongLink", EntryType::GNULongName, long_name.len() as u64, long_name.as_bytes(), b"")
        .file("innocent", b"x")
        .finish();
    check(&archive, &defaults(), &[&format!("refuse entry {long_evil}:")]);
}

#[test]
fn links_and_special_files_are_refused() {
    check(
        &RawTar::new().entry(b"evil", EntryType::Symlink, 0, b"", b"/etc/passwd").finish(),
        &defaults(),
        &["refuse entry evil: it is a symlink to /etc/passwd"],
    );
    check(
        &RawTar::new().entry(b"evil", EntryType::Link, 0, b"", b"/etc/passwd").finish(),
        &defaults(),
        &["refuse entry evil: it is a hard link to /etc/passwd"],
    );
    check(
        &RawTar::new().entry(b"dev/null", EntryType::Char, 0, b"", b"").finish(),
        &defaults(),
        &["refuse entry dev/null: it is a character device"],
    );
    check(
        &RawTar::new().entry(b"disk", EntryType::Block, 0, b"", b"").finish(),
        &defaults(),
        &["refuse entry disk: it is a block device"],
    );
    check(
        &RawTar::new().entry(b"pipe", EntryType::Fifo, 0, b"", b"").finish(),
        &defaults(),
        &["refuse entry pipe: it is a fifo"],
    );
}

#[test]
fn a_symlink_followed_by_a_file_through_it_writes_nothing_outside() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap();
    let archive = RawTar::new()
        .entry(b"link", EntryType::Symlink, 0, b"", target.as_bytes())
        .file("link/evil", b"pwned")
        .finish();
    check(&archive, &defaults(), &[&format!("refuse entry link: it is a symlink to {target}")]);
    assert!(!outside.path().join("evil").exists());
}

#[test]
fn sizes_over_the_limits_are_refused() {
    let huge = RawTar::new().entry(b"huge.bin", EntryType::Regular, 1 << 40, b"", b"").finish();
    check(&huge, &defaults(), &["refuse entry huge.bin: it is 1024.0 GiB, over the 100 MiB limit for one file"]);

    let small = BundleLimits { max_file_bytes: 1024, max_total_bytes: 3000, ..defaults() };
    check(
        &RawTar::new().file("big.bin", &[7; 2048]).finish(),
        &small,
        &["refuse entry big.bin: it is 2.0 KiB, over the 1 KiB limit"],
    );
    let total = RawTar::new().file("a.bin", &[1; 1000]).file("b.bin", &[2; 1000]).file("c.bin", &[3; 1001]).finish();
    check(&total, &small, &["refuse entry c.bin: the files add up to more than 2.9 KiB (2.9 KiB with this one)"]);

    let few = BundleLimits { max_files: 1, ..defaults() };
    check(
        &RawTar::new().file("a.txt", b"a").file("b.txt", b"b").finish(),
        &few,
        &["refuse entry b.txt: the archive has more than 1 files"],
    );
    let short = BundleLimits { max_path_bytes: 8, ..defaults() };
    check(
        &RawTar::new().file("abcdefghi", b"a").finish(),
        &short,
        &["refuse entry abcdefghi: the path is 9 bytes long"],
    );
}

#[test]
fn a_gzip_bomb_stops_at_a_bound() {
    // Zeros compress about a thousand to one; total-size checks stop bombs in file data.
    let limits = BundleLimits {
        max_files: 2,
        max_file_bytes: 64 << 20,
        max_total_bytes: 64 << 20,
        max_path_bytes: 64,
        ..defaults()
    };
    check(
        &RawTar::new().file("zeros", &vec![0; 65 << 20]).finish(),
        &limits,
        &["refuse entry zeros: it is 65.0 MiB, over the 64 MiB limit"],
    );
    // Tar metadata is read into memory before any entry is checked; the decompressed bound stops it.
    let tight = BundleLimits { max_files: 2, max_total_bytes: 4096, max_path_bytes: 64, ..defaults() };
    let name = vec![b'a'; 4 << 20];
    let archive = RawTar::new()
        .entry(b"././@LongLink", EntryType::GNULongName, name.len() as u64, &name, b"")
        .file("x", b"x")
        .finish();
    check(&archive, &tight, &["read bundle archive at the start: it expands to more than"]);
}

#[test]
fn duplicate_and_conflicting_paths_are_refused() {
    check(
        &RawTar::new().file("a.txt", b"1").file("a.txt", b"2").finish(),
        &defaults(),
        &["refuse entry a.txt: it appears twice"],
    );
    check(&RawTar::new().dir("d/").dir("d").finish(), &defaults(), &["refuse entry d: it appears twice"]);
    check(
        &RawTar::new().file("a", b"1").file("a/b", b"2").finish(),
        &defaults(),
        &["refuse entry a/b: a would be both a file and a directory"],
    );
    check(
        &RawTar::new().file("a/b", b"1").file("a", b"2").finish(),
        &defaults(),
        &["refuse entry a: a would be both a file and a directory"],
    );
}

#[test]
fn corrupt_truncated_and_oversized_streams_are_refused() {
    let source = tempfile::tempdir().unwrap();
    write_tree(source.path(), &[("dari.yml", b"name: demo\n", 0o644), ("noise.bin", &noise(64 * 1024), 0o644)]);
    let archive = pack_tree(source.path()).archive;

    check(&archive[..archive.len() / 2], &defaults(), &["read bundle archive", "corrupt or truncated"]);
    check(&archive[..archive.len() - 4], &defaults(), &["read bundle archive", "corrupt or truncated"]);
    let mut flipped = archive.clone();
    let middle = flipped.len() / 2;
    for byte in &mut flipped[middle..middle + 16] {
        *byte ^= 0x5a;
    }
    check(&flipped, &defaults(), &["read bundle archive"]);
    check(b"this is not gzip", &defaults(), &["read bundle archive at the start: it is corrupt or truncated"]);
    let mut trailing = archive.clone();
    trailing.extend_from_slice(b"junk");
    check(&trailing, &defaults(), &["data after the end of the gzip stream"]);
    let small = BundleLimits { max_archive_bytes: 1000, ..defaults() };
    check(&archive, &small, &["it is over the 1000 bytes limit for an archive"]);

    // A gzip stream that is complete but holds a tar cut inside an entry's data.
    let mut cut = RawTar::new().file("a.bin", &[1; 1000]).bytes;
    cut.truncate(512 + 10);
    check(&gzip(&cut), &defaults(), &["read entry a.bin: the archive ends after 10 of its 1000 bytes"]);
}

#[test]
fn a_wrong_expected_hash_is_refused_naming_both_hashes() {
    let archive = RawTar::new().file("a.txt", b"a").finish();
    let actual = crate::sha256_hex(&archive);
    let wrong = "0".repeat(64);
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("bundle");
    let options = ExtractOptions { limits: &BundleLimits::DEFAULT, expected_sha256: Some(&wrong), read_only: true };
    let error = extract(archive.as_slice(), &dest, &options).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("verify bundle archive: expected sha256 {wrong} but the archive has {actual}; upload the bundle again")
    );
    assert!(!dest.exists());
    assert_eq!(fs::read_dir(target.path()).unwrap().count(), 0);
}
