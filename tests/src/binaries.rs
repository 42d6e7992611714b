//! The workspace's binaries, built once per test run so that tests never run stale ones.
//!
//! `sandboxd` is built the way it ships: statically linked (`-C target-feature=+crt-static`,
//! with an explicit `--target` so that build scripts and proc-macros stay dynamic) in the
//! `sandboxd` profile, so every end-to-end test exercises the real artifact. From scratch that
//! profile costs less CPU than the dev profile (no debug info, and fat LTO over one codegen unit
//! is cheaper than optimising every crate separately), but after a change to the daemon it
//! relinks everything (about a minute on two cores, against seconds): set
//! `DARI_TEST_SANDBOXD_PROFILE=dev` for quick local iterations.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::Context as _;

/// The cargo profile sandboxd ships in: `[profile.sandboxd]` in the workspace's `Cargo.toml`.
pub const SANDBOXD_PROFILE: &str = "sandboxd";
/// Names another cargo profile for the tests' sandboxd, such as `dev`.
pub const ENV_TEST_SANDBOXD_PROFILE: &str = "DARI_TEST_SANDBOXD_PROFILE";

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

/// Builds the static `sandboxd` in a cargo `profile` under `target_dir` and returns its path.
pub fn build_static_sandboxd(target_dir: &Path, profile: &str) -> anyhow::Result<PathBuf> {
    let triple = sandboxd_target();
    let args = ["-p", "dari-sandboxd", "--bin", "sandboxd", "--target", &triple, "--profile", profile];
    cargo_build(&args, target_dir, Some("-C target-feature=+crt-static"))?;
    Ok(target_dir.join(&triple).join(profile_dir(profile)).join("sandboxd"))
}

/// Builds `dari` in a cargo `profile` under `target_dir` and returns its path (for the
/// benchmarks, which run from `target/<profile>/` rather than a test's `deps/`).
pub fn build_dari(target_dir: &Path, profile: &str) -> anyhow::Result<PathBuf> {
    cargo_build(&["-p", "dari-control", "--bin", "dari", "--profile", profile], target_dir, None)?;
    Ok(target_dir.join(profile_dir(profile)).join("dari"))
}

/// The directory a profile's artifacts go to: cargo names two of them after other profiles.
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
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

/// The cargo target directory the tests run from (`target/`, or `CARGO_TARGET_DIR`), where
/// the harness keeps what it builds and installs.
pub fn target_dir() -> PathBuf {
    host_dir().parent().expect("a target directory").to_path_buf()
}

/// `target/<profile>`, the directory of the test binary's `deps/`.
fn host_dir() -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/e2e-<hash>
    test_exe.parent().and_then(|deps| deps.parent()).expect("test binary in target/<profile>/deps").to_path_buf()
}

fn build_binaries() -> Built {
    let host_dir = host_dir();
    let host_profile = match host_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(profile) => profile.to_owned(),
    };
    let target_dir = host_dir.parent().expect("a target directory").to_path_buf();

    let built = cargo_build(&["-p", "dari-control", "--bin", "dari", "--profile", &host_profile], &target_dir, None)
        .and_then(|()| {
            let profile = std::env::var(ENV_TEST_SANDBOXD_PROFILE).unwrap_or_else(|_| SANDBOXD_PROFILE.to_owned());
            build_static_sandboxd(&target_dir, &profile)
        });
    match built {
        Ok(sandboxd) => Built { sandboxd, host_dir },
        Err(error) => panic!("{error:#}"),
    }
}

fn cargo_build(args: &[&str], target_dir: &Path, rustflags: Option<&str>) -> anyhow::Result<()> {
    #[allow(clippy::disallowed_methods)] // The harness builds the binaries under test.
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(crate::workspace_root())
        .args(["build", "--quiet"])
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null());
    match rustflags {
        Some(flags) => command.env("RUSTFLAGS", flags),
        None => command.env_remove("RUSTFLAGS"),
    };
    let output = command.output().context("run cargo build")?;
    if !output.status.success() {
        anyhow::bail!("cargo build {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}
