//! Helpers shared by the unit tests: building trees on disk and running git.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use crate::command::{ChildEnv, ChildStdio, command};
use crate::{BundleLimits, PackedBundle, pack, select_files};

/// Writes `files` under `root` as (bundle path, contents, mode), creating parent directories.
pub(crate) fn write_tree(root: &Path, files: &[(&str, &[u8], u32)]) {
    for (path, contents, mode) in files {
        let full_path = root.join(path);
        fs::create_dir_all(full_path.parent().expect("a file path has a parent")).unwrap();
        fs::write(&full_path, contents).unwrap();
        fs::set_permissions(&full_path, fs::Permissions::from_mode(*mode)).unwrap();
    }
}

/// Selects and packs `root` with the default limits.
pub(crate) fn pack_tree(root: &Path) -> PackedBundle {
    let selected = select_files(root, &BundleLimits::DEFAULT).unwrap();
    pack(&selected, &BundleLimits::DEFAULT).unwrap()
}

/// Runs a command in `cwd` with test-friendly git identity settings, asserting it succeeds, and
/// returns its stdout.
pub(crate) fn run(cwd: &Path, program: &str, args: &[&str]) -> Vec<u8> {
    let env = ChildEnv { inherit: true, set: &[("LC_ALL", "C")], remove: &[] };
    let stdio = ChildStdio { stdin: Stdio::null(), stdout: Stdio::piped(), stderr: Stdio::piped() };
    let output = command(program, cwd, &env, stdio).args(args).output().unwrap();
    assert!(output.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// Runs git with a fixed identity, so commits work on a machine without git config.
pub(crate) fn git(cwd: &Path, args: &[&str]) -> Vec<u8> {
    let mut full_args =
        vec!["-c", "user.email=test@example.com", "-c", "user.name=Test", "-c", "init.defaultBranch=main"];
    full_args.extend_from_slice(args);
    run(cwd, "git", &full_args)
}
