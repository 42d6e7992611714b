//! The workspace's binaries, built once per test run so that tests never run stale ones.
//!
//! `sandboxd` is built the way it ships: statically linked (`-C target-feature=+crt-static`,
//! with an explicit `--target` so that build scripts and proc-macros stay dynamic), so every
//! end-to-end test exercises the real artifact.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The target triple sandboxd is built for.
pub fn sandboxd_target() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// The path of a workspace binary (`dari` or `sandboxd`), building them on first use.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Built> = OnceLock::new();
    let built = BUILT.get_or_init(build_binaries);
    if name == "sandboxd" { built.sandboxd.clone() } else { built.host_dir.join(name) }
}

/// Runs `dari` with arguments, with no inherited DARI_* configuration.
pub fn dari(args: &[&str]) -> Output {
    run(binary("dari"), args, &[])
}

/// Runs `dari` with arguments and these variables only (such as `ControlServer::cli_env`).
pub fn dari_with_env(args: &[&str], env: &[(&str, String)]) -> Output {
    run(binary("dari"), args, env)
}

/// Runs `dari` as [`dari_with_env`] does, with `stdin` as its standard input.
pub fn dari_with_stdin(args: &[&str], env: &[(&str, String)], stdin: &[u8]) -> Output {
    use std::io::Write;
    #[allow(clippy::disallowed_methods)] // Tests start the real binaries directly.
    let mut command = Command::new(binary("dari"));
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    set_environment(&mut command, env);
    let mut child = command.spawn().expect("start dari");
    child.stdin.take().expect("piped stdin").write_all(stdin).expect("write dari's stdin");
    child.wait_with_output().expect("wait for dari")
}

pub fn sandboxd(args: &[&str]) -> Output {
    run(binary("sandboxd"), args, &[])
}

struct Built {
    host_dir: PathBuf,
    sandboxd: PathBuf,
}

fn run(program: PathBuf, args: &[&str], env: &[(&str, String)]) -> Output {
    #[allow(clippy::disallowed_methods)] // Tests start the real binaries directly.
    let mut command = Command::new(&program);
    command.args(args).stdin(Stdio::null());
    set_environment(&mut command, env);
    command.output().unwrap_or_else(|error| panic!("run {}: {error}", program.display()))
}

/// Gives the command `env`, and none of the test's own DARI_* settings (or CI markers).
fn set_environment(command: &mut Command, env: &[(&str, String)]) {
    for (key, _) in std::env::vars() {
        if key.starts_with("DARI_") || key == "GITHUB_ACTIONS" {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().map(|(key, value)| (key, value)));
}

fn build_binaries() -> Built {
    let test_exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/e2e-<hash>
    let host_dir =
        test_exe.parent().and_then(|deps| deps.parent()).expect("test binary in target/<profile>/deps").to_path_buf();
    let profile = host_dir.file_name().and_then(|name| name.to_str()).unwrap_or("debug").to_owned();
    let target_root = host_dir.parent().expect("a target directory").to_path_buf();
    let release = profile == "release";

    cargo_build(&["-p", "dari-control", "--bin", "dari"], release, None);
    let triple = sandboxd_target();
    cargo_build(
        &["-p", "dari-sandboxd", "--bin", "sandboxd", "--target", &triple],
        release,
        Some("-C target-feature=+crt-static"),
    );
    Built { sandboxd: target_root.join(&triple).join(&profile).join("sandboxd"), host_dir }
}

fn cargo_build(args: &[&str], release: bool, rustflags: Option<&str>) {
    #[allow(clippy::disallowed_methods)] // The harness builds the binaries under test.
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(crate::workspace_root()).args(["build", "--quiet"]).args(args).stdin(Stdio::null());
    if release {
        command.arg("--release");
    }
    match rustflags {
        Some(flags) => command.env("RUSTFLAGS", flags),
        None => command.env_remove("RUSTFLAGS"),
    };
    let output = command.output().expect("run cargo build");
    assert!(output.status.success(), "cargo build {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
}
