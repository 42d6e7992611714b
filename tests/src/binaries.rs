//! The workspace's binaries, built once per test run so that tests never run stale ones.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The path of a workspace binary (`dari` or `sandboxd`), building them on first use.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(build_binaries);
    dir.join(name)
}

/// Runs `dari` with arguments, with no inherited DARI_* configuration.
pub fn dari(args: &[&str]) -> Output {
    run(binary("dari"), args)
}

pub fn sandboxd(args: &[&str]) -> Output {
    run(binary("sandboxd"), args)
}

fn run(program: PathBuf, args: &[&str]) -> Output {
    #[allow(clippy::disallowed_methods)] // Tests start the real binaries directly.
    let mut command = Command::new(&program);
    command.args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("DARI_") || key == "GITHUB_ACTIONS" {
            command.env_remove(key);
        }
    }
    command.output().unwrap_or_else(|error| panic!("run {}: {error}", program.display()))
}

fn build_binaries() -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/e2e-<hash>
    let profile_dir =
        test_exe.parent().and_then(|deps| deps.parent()).expect("test binary in target/<profile>/deps").to_path_buf();
    let release = profile_dir.file_name().is_some_and(|name| name == "release");
    #[allow(clippy::disallowed_methods)] // The harness builds the binaries under test.
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(crate::workspace_root())
        .args(["build", "--quiet", "--bins", "-p", "dari-control", "-p", "dari-sandboxd"])
        .stdin(Stdio::null());
    if release {
        command.arg("--release");
    }
    let output = command.output().expect("run cargo build");
    assert!(output.status.success(), "cargo build failed:\n{}", String::from_utf8_lossy(&output.stderr));
    profile_dir
}
