use std::fs;
use std::io::{Seek, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::*;

/// Each kind of entry in a workspace, as a sorted list that two trees can be compared by.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, relative: &str, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(root.join(relative)).expect("read dir").flatten().collect();
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if relative.is_empty() { name } else { format!("{relative}/{name}") };
            let metadata = fs::symlink_metadata(entry.path()).expect("metadata");
            if metadata.file_type().is_symlink() {
                out.push(format!("{path} -> {}", fs::read_link(entry.path()).expect("link").display()));
            } else if metadata.is_dir() {
                out.push(format!("{path}/ {:o}", metadata.permissions().mode() & 0o777));
                walk(root, &path, out);
            } else {
                let contents = fs::read(entry.path()).expect("read");
                let mode = metadata.permissions().mode() & 0o777;
                out.push(format!("{path} {mode:o} {}", String::from_utf8_lossy(&contents)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out
}

fn pack_dir(root: &Path, exclude: &[&str], max_bytes: u64) -> Result<pack::Packed, ArchiveError> {
    let exclude: Vec<String> = exclude.iter().map(|path| (*path).to_owned()).collect();
    let exclude = check_excludes(&exclude)?;
    let (file, path) = temp_file()?;
    pack::pack(root, &exclude, max_bytes, file, &path)
}

fn sample_workspace() -> tempfile::TempDir {
    let workspace = tempfile::tempdir().expect("workspace");
    let root = workspace.path();
    fs::create_dir_all(root.join("src/nested/deeper")).expect("mkdir");
    fs::create_dir_all(root.join("empty")).expect("mkdir");
    fs::create_dir_all(root.join("node_modules/pkg")).expect("mkdir");
    fs::create_dir_all(root.join(".dari/agent-resources/source-bundle")).expect("mkdir");
    fs::write(root.join("README.md"), "hello\n").expect("write");
    fs::write(root.join("src/nested/deeper/main.rs"), "fn main() {}\n").expect("write");
    fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").expect("write");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(root.join("node_modules/pkg/index.js"), "module.exports = 1\n").expect("write");
    fs::write(root.join(".dari/agent-resources/source-bundle/dari.yml"), "name: x\n").expect("write");
    fs::write(root.join(".dari/notes.txt"), "kept\n").expect("write");
    symlink("src/nested/deeper/main.rs", root.join("main-link")).expect("symlink");
    symlink("../../README.md", root.join("src/nested/readme")).expect("symlink");
    symlink("/etc/passwd", root.join("outside")).expect("symlink");
    nix::unistd::mkfifo(&root.join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    workspace
}

#[test]
fn a_workspace_round_trips_with_its_symlinks_modes_and_empty_directories() {
    let source = sample_workspace();
    let packed = pack_dir(source.path(), &["node_modules/"], 1 << 30).expect("pack");
    assert_eq!(packed.file_count, 4, "README.md, main.rs, run.sh, .dari/notes.txt");
    assert_eq!(packed.skipped, ["outside", "pipe"]);
    assert_eq!(packed.sha256.len(), 64);

    let restored = tempfile::tempdir().expect("restored");
    fs::write(restored.path().join("README.md"), "old contents\n").expect("write");
    fs::create_dir(restored.path().join("unrelated")).expect("mkdir");
    let file_count = unpack::unpack(packed.file, restored.path()).expect("unpack");
    assert_eq!(file_count, 4);

    fs::remove_dir_all(source.path().join("node_modules")).expect("remove");
    fs::remove_dir_all(source.path().join(".dari/agent-resources")).expect("remove");
    fs::remove_file(source.path().join("outside")).expect("remove");
    fs::remove_file(source.path().join("pipe")).expect("remove");
    fs::remove_dir(restored.path().join("unrelated")).expect("the unrelated directory is kept");
    assert_eq!(tree(restored.path()), tree(source.path()));
    let run = fs::metadata(restored.path().join("run.sh")).expect("run.sh");
    assert_eq!(run.permissions().mode() & 0o777, 0o755);
    assert_eq!(fs::read_to_string(restored.path().join("main-link")).expect("through the link"), "fn main() {}\n");
}

#[test]
fn an_archive_over_max_bytes_is_refused_naming_the_limit() {
    let workspace = tempfile::tempdir().expect("workspace");
    let noise: Vec<u8> = (0..64 * 1024).map(|_| fastrand::u8(..)).collect();
    fs::write(workspace.path().join("noise.bin"), noise).expect("write");
    let error = pack_dir(workspace.path(), &[], 16 * 1024).err().expect("refused");
    assert!(matches!(error, ArchiveError::TooLarge { limit: 16384 }), "{error:?}");
    assert!(error.to_string().contains("limit of 16384 bytes"), "{error}");
    assert!(pack_dir(workspace.path(), &["noise.bin"], 16 * 1024).is_ok());
}

#[test]
fn exclude_paths_are_checked() {
    for bad in ["../x", "/etc", "a//b", ""] {
        let error = pack_dir(Path::new("/nonexistent"), &[bad], 1 << 30).err().expect("refused");
        assert!(error.is_bad_request(), "{bad:?}: {error:?}");
    }
}

/// One raw entry of a hostile archive; the name is written as given, without the tar crate's
/// checks.
enum Raw<'a> {
    File(&'a str, &'a str),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    Device(&'a str),
    Fifo(&'a str),
}

fn hostile_archive(entries: &[Raw<'_>]) -> File {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for entry in entries {
        let (name, entry_type, data, link) = match entry {
            Raw::File(name, data) => (name, tar::EntryType::Regular, data.as_bytes(), None),
            Raw::Dir(name) => (name, tar::EntryType::Directory, &b""[..], None),
            Raw::Symlink(name, target) => (name, tar::EntryType::Symlink, &b""[..], Some(target)),
            Raw::HardLink(name, target) => (name, tar::EntryType::Link, &b""[..], Some(target)),
            Raw::Device(name) => (name, tar::EntryType::Char, &b""[..], None),
            Raw::Fifo(name) => (name, tar::EntryType::Fifo, &b""[..], None),
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, data).expect("append");
    }
    let bytes = builder.into_inner().expect("finish tar").finish().expect("finish gzip");
    let (mut file, _) = temp_file().expect("temp file");
    file.write_all(&bytes).expect("write");
    file.rewind().expect("rewind");
    file
}

#[track_caller]
fn check_refused(entries: &[Raw<'_>], expect: &str) {
    let parent = tempfile::tempdir().expect("parent");
    let workspace = parent.path().join("workspace");
    fs::create_dir(&workspace).expect("workspace");
    let outside = parent.path().join("outside");
    fs::create_dir(&outside).expect("outside");
    symlink(&outside, workspace.join("existing-link")).expect("symlink");
    let error = unpack::unpack(hostile_archive(entries), &workspace).expect_err("refused");
    let message = error.to_string();
    assert!(message.contains(expect), "expected {expect:?} in {message:?}");
    let mut written: Vec<String> = tree(&workspace);
    written.retain(|entry| !entry.starts_with("existing-link"));
    assert_eq!(written, Vec::<String>::new(), "a refused archive wrote nothing");
    assert_eq!(tree(&outside), Vec::<String>::new(), "nothing outside the workspace");
    assert_eq!(tree(parent.path()).len(), 3, "{:?}", tree(parent.path()));
}

#[test]
fn entries_that_escape_the_workspace_are_refused() {
    check_refused(&[Raw::File("ok.txt", "x"), Raw::File("../evil", "x")], "has a '..' component");
    check_refused(&[Raw::File("a/../../evil", "x")], "has a '..' component");
    check_refused(&[Raw::File("/tmp/evil", "x")], "is absolute");
    check_refused(&[Raw::Symlink("link", "/etc"), Raw::File("link/passwd", "x")], "symlink to an absolute path");
    check_refused(&[Raw::Symlink("link", "sub"), Raw::Dir("sub"), Raw::File("link/passwd", "x")], "through link");
    check_refused(&[Raw::Symlink("up", "../outside")], "leads outside the workspace");
    check_refused(&[Raw::Symlink("a/b/up", "../../../outside")], "leads outside the workspace");
    check_refused(&[Raw::Symlink("a/b/d", ".."), Raw::Symlink("a/b/e", "d/../../..")], "'..' after a name");
    check_refused(&[Raw::File("existing-link/passwd", "x")], "through the symlink existing-link");
    check_refused(&[Raw::HardLink("hard", "/etc/passwd")], "hard link");
    check_refused(&[Raw::Device("null")], "device");
    check_refused(&[Raw::Fifo("pipe")], "fifo");
    check_refused(&[Raw::File("a.txt", "x"), Raw::File("a.txt", "y")], "twice");
    check_refused(&[Raw::File(".dari/agent-resources/source-bundle/x", "y")], "source bundle");
}

#[test]
fn a_directory_entry_replaces_a_symlink_without_touching_its_target() {
    let parent = tempfile::tempdir().expect("parent");
    let workspace = parent.path().join("workspace");
    fs::create_dir(&workspace).expect("workspace");
    fs::create_dir(parent.path().join("outside")).expect("outside");
    symlink(parent.path().join("outside"), workspace.join("docs")).expect("symlink");
    let archive = hostile_archive(&[Raw::Dir("./"), Raw::Dir("./docs/"), Raw::File("./docs/a.md", "a")]);
    assert_eq!(unpack::unpack(archive, &workspace).expect("unpack"), 1);
    assert!(fs::symlink_metadata(workspace.join("docs")).expect("docs").is_dir());
    assert_eq!(fs::read_to_string(workspace.join("docs/a.md")).expect("read"), "a");
    assert_eq!(fs::read_dir(parent.path().join("outside")).expect("outside").count(), 0);
}

#[test]
fn a_download_must_match_the_announced_size_and_sha256() {
    let request = WorkspaceRestore { url: "/w".to_owned(), sha256: "ab".repeat(32), size_bytes: 10 };
    let good = Downloaded { size_bytes: 10, sha256: "AB".repeat(32) };
    assert!(verify(&good, &request).is_ok());
    let short = Downloaded { size_bytes: 9, ..good };
    assert!(matches!(verify(&short, &request), Err(ArchiveError::SizeMismatch { expected: 10, actual: 9 })));
    let other = Downloaded { size_bytes: 10, sha256: "cd".repeat(32) };
    let error = verify(&other, &request).expect_err("refused");
    assert!(error.to_string().contains("sha256"), "{error}");
}

#[test]
fn symlink_targets_stay_inside() {
    assert_eq!(symlink_escape("a/b/link", "../../c/d"), None);
    assert_eq!(symlink_escape("link", "./c/./d"), None);
    assert!(symlink_escape("link", "..").is_some());
    assert!(symlink_escape("a/link", "../..").is_some());
    assert!(symlink_escape("a/link", "b/../c").is_some());
    assert!(symlink_escape("a/link", "/a").is_some());
    assert!(symlink_escape("a/link", "").is_some());
}
