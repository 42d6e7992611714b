mod hostile;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::{ExtractError, ExtractOptions, extract, read_archive};
use crate::files::ReadFileError;
use crate::test_support::{pack_tree, write_tree};
use crate::{BundleLimits, select_files};

/// Builds tar streams header by header, so tests can write names and types that the tar crate's
/// safe setters refuse.
struct RawTar {
    bytes: Vec<u8>,
}

impl RawTar {
    fn new() -> RawTar {
        RawTar { bytes: Vec::new() }
    }

    /// Appends an entry whose header declares `declared_size` and which is followed by `data`,
    /// padded to a block.
    fn entry(mut self, name: &[u8], kind: tar::EntryType, declared_size: u64, data: &[u8], link: &[u8]) -> RawTar {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(declared_size);
        header.set_mtime(0);
        header.set_cksum();
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(data);
        self.bytes.resize(self.bytes.len().next_multiple_of(512), 0);
        self
    }

    fn file(self, name: &str, data: &[u8]) -> RawTar {
        self.entry(name.as_bytes(), tar::EntryType::Regular, data.len() as u64, data, b"")
    }

    fn dir(self, name: &str) -> RawTar {
        self.entry(name.as_bytes(), tar::EntryType::Directory, 0, b"", b"")
    }

    /// Ends the archive and gzips it.
    fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0; 1024]);
        gzip(&self.bytes)
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn options(limits: &BundleLimits) -> ExtractOptions<'_> {
    ExtractOptions { limits, expected_sha256: None, read_only: false }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

const TREE: &[(&str, &[u8], u32)] = &[
    ("dari.yml", b"name: demo\n", 0o644),
    ("src/app/main.py", b"print('hi')\n", 0o640),
    ("tools/run.sh", b"#!/bin/sh\necho hi\n", 0o700),
    ("empty.txt", b"", 0o644),
];

#[test]
fn pack_then_extract_round_trips_contents_and_modes() {
    let source = tempfile::tempdir().unwrap();
    let long_path = format!("{}/{}.txt", "d".repeat(120), "f".repeat(40));
    write_tree(source.path(), TREE);
    write_tree(source.path(), &[(&long_path, b"long", 0o644)]);
    let packed = pack_tree(source.path());
    let selected = select_files(source.path(), &BundleLimits::DEFAULT).unwrap();

    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("bundle");
    let upper_hash = packed.sha256.to_uppercase();
    let options =
        ExtractOptions { limits: &BundleLimits::DEFAULT, expected_sha256: Some(&upper_hash), read_only: false };
    let extracted = extract(packed.archive.as_slice(), &dest, &options).unwrap();

    assert_eq!(extracted.root, dest);
    assert_eq!(extracted.sha256, packed.sha256);
    assert_eq!(extracted.files, selected.files);
    for file in &selected.files {
        let written = dest.join(&file.path);
        assert_eq!(fs::read(&written).unwrap(), fs::read(source.path().join(&file.path)).unwrap(), "{}", file.path);
        assert_eq!(mode(&written), if file.executable { 0o755 } else { 0o644 }, "{}", file.path);
    }
    assert_eq!(mode(&dest.join("tools/run.sh")), 0o755);
    assert_eq!(mode(&dest.join("src/app")), 0o755);
    assert_eq!(fs::read_dir(target.path()).unwrap().count(), 1, "only dest is left in the parent");
}

#[test]
fn read_only_extraction_clears_every_write_bit() {
    let source = tempfile::tempdir().unwrap();
    write_tree(source.path(), TREE);
    let packed = pack_tree(source.path());
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("bundle");
    let options = ExtractOptions { limits: &BundleLimits::DEFAULT, expected_sha256: None, read_only: true };
    extract(packed.archive.as_slice(), &dest, &options).unwrap();

    // Tests run as root, which may write anyway, so check the mode bits.
    assert_eq!(mode(&dest), 0o555);
    assert_eq!(mode(&dest.join("src")), 0o555);
    assert_eq!(mode(&dest.join("src/app")), 0o555);
    assert_eq!(mode(&dest.join("src/app/main.py")), 0o444);
    assert_eq!(mode(&dest.join("dari.yml")), 0o444);
    assert_eq!(mode(&dest.join("tools/run.sh")), 0o555);
    assert_eq!(fs::read(dest.join("dari.yml")).unwrap(), b"name: demo\n");
    // Let the temporary directory clean up after itself as a non-root user too.
    for dir in [&dest, &dest.join("src"), &dest.join("src/app"), &dest.join("tools")] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn an_existing_dest_is_refused_and_left_alone() {
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("bundle");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("keep"), b"mine").unwrap();
    let archive = RawTar::new().file("a.txt", b"a").finish();
    let error = extract(archive.as_slice(), &dest, &options(&BundleLimits::DEFAULT)).unwrap_err();
    assert!(matches!(error, ExtractError::DestExists { .. }), "{error:?}");
    assert!(error.to_string().contains(&dest.display().to_string()), "{error}");
    assert_eq!(fs::read(dest.join("keep")).unwrap(), b"mine");
    assert_eq!(fs::read_dir(target.path()).unwrap().count(), 1);
}

#[test]
fn directory_entries_are_created_and_pax_global_headers_skipped() {
    // `git archive` starts with a PAX global header holding the commit id.
    let global: &[u8] = b"52 comment=0123456789012345678901234567890123456789\n";
    let archive = RawTar::new()
        .entry(b"pax_global_header", tar::EntryType::XGlobalHeader, global.len() as u64, global, b"")
        .dir("src/")
        .file("src/a.txt", b"a")
        .dir("empty/")
        .dir("src/nested")
        .finish();
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("bundle");
    let extracted = extract(archive.as_slice(), &dest, &options(&BundleLimits::DEFAULT)).unwrap();
    assert_eq!(extracted.files.iter().map(|file| file.path.as_str()).collect::<Vec<_>>(), ["src/a.txt"]);
    assert!(dest.join("empty").is_dir());
    assert!(dest.join("src/nested").is_dir());
    assert_eq!(mode(&dest.join("empty")), 0o755);
}

#[test]
fn read_archive_lists_every_file_and_keeps_small_contents() {
    let source = tempfile::tempdir().unwrap();
    write_tree(source.path(), TREE);
    let packed = pack_tree(source.path());
    let files = read_archive(&packed.archive, &BundleLimits::DEFAULT, 12).unwrap();

    assert_eq!(files.sha256(), packed.sha256);
    assert_eq!(files.paths().collect::<Vec<_>>(), ["dari.yml", "empty.txt", "src/app/main.py", "tools/run.sh"]);
    assert_eq!(files.files(), select_files(source.path(), &BundleLimits::DEFAULT).unwrap().files);
    assert!(files.contains("tools/run.sh"));
    assert!(!files.contains("tools"));
    assert_eq!(files.read_file("dari.yml", 100).unwrap(), b"name: demo\n");
    assert_eq!(files.read_file("empty.txt", 0).unwrap(), b"");
    assert!(matches!(files.read_file("dari.yml", 5), Err(ReadFileError::TooLarge { size: 11, limit: 5, .. })));
    assert!(matches!(files.read_file("nope", 5), Err(ReadFileError::NotInBundle { .. })));
    let error = files.read_file("tools/run.sh", 100).unwrap_err();
    assert!(matches!(error, ReadFileError::NotLoaded { size: 18, loaded_limit: 12, .. }), "{error:?}");
    assert!(error.to_string().starts_with("read tools/run.sh: it is 18 bytes"), "{error}");
}
