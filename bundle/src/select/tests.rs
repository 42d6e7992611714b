use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{SelectError, SelectedFile, Selection, select_files};
use crate::BundleLimits;
use crate::files::ReadFileError;
use crate::test_support::{git, run, write_tree};

fn selected_paths(root: &Path) -> (Selection, Vec<String>) {
    let selected = select_files(root, &BundleLimits::DEFAULT).unwrap();
    (selected.selection, selected.paths().map(str::to_owned).collect())
}

#[track_caller]
fn check_refused(root: &Path, limits: &BundleLimits, expect: &str) {
    let error = select_files(root, limits).unwrap_err();
    assert_eq!(error.to_string(), expect, "{error:?}");
}

/// A repository with tracked, untracked, ignored and deleted files.
fn git_repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    git(root, &["init", "-q"]);
    write_tree(
        root,
        &[
            (".gitignore", b"*.log\nbuild/\n", 0o644),
            ("dari.yml", b"name: demo\n", 0o644),
            ("src/main.py", b"print('hi')\n", 0o644),
            ("tools/run.sh", b"#!/bin/sh\n", 0o755),
            ("gone.txt", b"deleted soon\n", 0o644),
        ],
    );
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "initial"]);
    write_tree(
        root,
        &[
            ("notes.txt", b"untracked\n", 0o644),
            ("debug.log", b"ignored\n", 0o644),
            ("src/trace.log", b"ignored\n", 0o644),
            ("build/out.bin", b"ignored\n", 0o644),
        ],
    );
    fs::remove_file(root.join("gone.txt")).unwrap();
    repo
}

#[test]
fn git_selection_is_what_git_lists_minus_deleted_files() {
    let repo = git_repo();
    let root = repo.path();
    let listed = git(root, &["ls-files", "--cached", "--others", "--exclude-standard", "-z"]);
    let mut expected: Vec<String> = listed
        .split(|byte| *byte == 0)
        .filter(|raw| !raw.is_empty())
        .map(|raw| String::from_utf8(raw.to_vec()).unwrap())
        .filter(|path| root.join(path).exists())
        .collect();
    expected.sort();
    assert!(listed.split(|byte| *byte == 0).any(|raw| raw == b"gone.txt"), "git still lists the deleted file");

    let selected = select_files(root, &BundleLimits::DEFAULT).unwrap();
    assert_eq!(selected.selection, Selection::Git);
    assert_eq!(selected.paths().collect::<Vec<_>>(), expected);
    assert_eq!(
        selected.files,
        vec![
            SelectedFile { path: ".gitignore".to_owned(), size: 13, executable: false },
            SelectedFile { path: "dari.yml".to_owned(), size: 11, executable: false },
            SelectedFile { path: "notes.txt".to_owned(), size: 10, executable: false },
            SelectedFile { path: "src/main.py".to_owned(), size: 12, executable: false },
            SelectedFile { path: "tools/run.sh".to_owned(), size: 10, executable: true },
        ]
    );
}

#[test]
fn git_selection_is_relative_to_a_deploy_root_below_the_repository() {
    let repo = git_repo();
    write_tree(
        repo.path(),
        &[("app/dari.yml", b"name: app\n", 0o644), ("app/lib/x.py", b"", 0o644), ("app/x.log", b"", 0o644)],
    );
    assert_eq!(
        selected_paths(&repo.path().join("app")),
        (Selection::Git, vec!["dari.yml".to_owned(), "lib/x.py".to_owned()])
    );
}

#[test]
fn git_refuses_a_tracked_symlink() {
    let repo = git_repo();
    std::os::unix::fs::symlink("/etc/passwd", repo.path().join("src/passwd")).unwrap();
    git(repo.path(), &["add", "src/passwd"]);
    check_refused(
        repo.path(),
        &BundleLimits::DEFAULT,
        "refuse symlink src/passwd: bundles hold only regular files; replace it with a copy of its target, or remove it or add it to .gitignore",
    );
}

#[test]
fn git_refuses_a_nested_repository() {
    let repo = git_repo();
    let nested = repo.path().join("vendor/lib");
    fs::create_dir_all(&nested).unwrap();
    git(&nested, &["init", "-q"]);
    write_tree(&nested, &[("a.txt", b"a", 0o644)]);
    // Untracked, `--others` lists it as "vendor/lib/".
    let error = select_files(repo.path(), &BundleLimits::DEFAULT).unwrap_err();
    assert!(matches!(error, SelectError::Submodule { ref path } if path == "vendor/lib"), "{error:?}");

    // Committed and added, it is a gitlink that `--cached` lists as "vendor/lib".
    git(&nested, &["add", "."]);
    git(&nested, &["commit", "-q", "-m", "nested"]);
    git(repo.path(), &["add", "vendor/lib"]);
    let listed = git(repo.path(), &["ls-files", "--stage", "vendor/lib"]);
    assert!(listed.starts_with(b"160000 "), "not a gitlink: {}", String::from_utf8_lossy(&listed));
    check_refused(
        repo.path(),
        &BundleLimits::DEFAULT,
        "refuse vendor/lib: it is a git submodule or a nested repository; copy its files in, or add it to .gitignore",
    );
}

#[test]
fn walk_skips_clutter_at_any_depth() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree: Vec<(String, &[u8], u32)> =
        vec![("dari.yml".to_owned(), b"name: demo\n", 0o644), ("a/b.txt".to_owned(), b"b", 0o755)];
    for name in super::WALK_SKIPPED_NAMES {
        tree.push((format!("{name}/x"), b"skipped", 0o644));
        tree.push((format!("a/deep/{name}"), b"skipped", 0o644));
    }
    let borrowed: Vec<(&str, &[u8], u32)> =
        tree.iter().map(|(path, contents, mode)| (path.as_str(), *contents, *mode)).collect();
    write_tree(dir.path(), &borrowed);
    fs::create_dir(dir.path().join("empty")).unwrap();

    let selected = select_files(dir.path(), &BundleLimits::DEFAULT).unwrap();
    assert_eq!(selected.selection, Selection::Walk);
    assert_eq!(
        selected.files,
        vec![
            SelectedFile { path: "a/b.txt".to_owned(), size: 1, executable: true },
            SelectedFile { path: "dari.yml".to_owned(), size: 11, executable: false },
        ]
    );
}

#[test]
fn walk_refuses_symlinks_and_special_files() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("dari.yml", b"", 0o644), ("a/b.txt", b"", 0o644)]);
    std::os::unix::fs::symlink("../dari.yml", dir.path().join("a/link")).unwrap();
    check_refused(
        dir.path(),
        &BundleLimits::DEFAULT,
        "refuse symlink a/link: bundles hold only regular files; replace it with a copy of its target, or remove it or add it to .gitignore",
    );

    fs::remove_file(dir.path().join("a/link")).unwrap();
    run(dir.path(), "mkfifo", &["a/pipe"]);
    check_refused(
        dir.path(),
        &BundleLimits::DEFAULT,
        "refuse fifo a/pipe: bundles hold only regular files; remove it or add it to .gitignore",
    );
}

#[test]
fn limits_are_enforced_with_the_path_and_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[("dari.yml", b"12345", 0o644), ("src/ab.py", b"1234567", 0o644), ("tools/big.bin", b"", 0o644)],
    );
    // A sparse file: 150 MiB on paper, no blocks on disk.
    fs::File::options().write(true).open(dir.path().join("tools/big.bin")).unwrap().set_len(150 << 20).unwrap();
    check_refused(
        dir.path(),
        &BundleLimits::DEFAULT,
        "tools/big.bin is 150.0 MiB, over the 100 MiB limit for one file; add it to .gitignore or remove it",
    );

    fs::remove_file(dir.path().join("tools/big.bin")).unwrap();
    let root = dir.path().display();
    check_refused(
        dir.path(),
        &BundleLimits { max_files: 1, ..BundleLimits::DEFAULT },
        &format!(
            "{root} holds more than 1 files; add build outputs and dependencies to .gitignore, or deploy a smaller directory"
        ),
    );
    let error = select_files(dir.path(), &BundleLimits { max_total_bytes: 10, ..BundleLimits::DEFAULT }).unwrap_err();
    assert!(matches!(error, SelectError::TotalTooLarge { total: 12, limit: 10, .. }), "{error:?}");
    assert!(
        error.to_string().starts_with(&format!("files under {root} add up to more than 10 bytes (12 bytes once ")),
        "{error}"
    );
    check_refused(
        dir.path(),
        &BundleLimits { max_path_bytes: 8, ..BundleLimits::DEFAULT },
        "refuse src/ab.py: the path is 9 bytes long, over the 8-byte limit for one path; rename it",
    );
}

#[test]
fn non_utf8_names_and_backslashes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
    fs::write(dir.path().join(name), b"").unwrap();
    check_refused(dir.path(), &BundleLimits::DEFAULT, "refuse bad\u{fffd}name: the path is not valid UTF-8; rename it");

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a\\b"), b"").unwrap();
    check_refused(dir.path(), &BundleLimits::DEFAULT, "refuse a\\b: the path contains a backslash; rename it");
}

#[test]
fn read_file_reads_selected_files_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("dari.yml", b"name: demo\n", 0o644), ("src/a.py", b"pass\n", 0o644)]);
    let selected = select_files(dir.path(), &BundleLimits::DEFAULT).unwrap();
    assert!(selected.contains("src/a.py"));
    assert!(!selected.contains("src"));
    assert_eq!(selected.read_file("dari.yml", 11).unwrap(), b"name: demo\n");
    assert!(matches!(selected.read_file("dari.yml", 10), Err(ReadFileError::TooLarge { size: 11, limit: 10, .. })));
    assert!(matches!(selected.read_file("missing.txt", 10), Err(ReadFileError::NotInBundle { .. })));

    fs::remove_file(dir.path().join("src/a.py")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("src/a.py")).unwrap();
    let error = selected.read_file("src/a.py", 1 << 20).unwrap_err();
    assert!(matches!(error, ReadFileError::Symlink { .. }), "{error:?}");
    assert!(error.to_string().contains("src/a.py"), "{error}");
}
