//! What `examples/claude-sdk-runtime` needs on the machine, installed once for the tests: the
//! Python packages its `setup.sh` installs with pip (`claude-agent-sdk`, `fastapi`, `uvicorn`)
//! in a virtual environment, and Claude Code (`@anthropic-ai/claude-code`) in an npm prefix,
//! both under `<target>/test-deps/claude-sdk` and reused by later runs. Running `sandbox.setup`
//! in the sandbox comes later; until then the test puts these `bin` directories first on the
//! sandboxes' `PATH`.
//!
//! The versions are pinned, so that a run tests what the last one did; `setup.sh` installs the
//! latest. Change them here deliberately: a different list reinstalls everything.
//!
//! A cold install downloads about 250 MB (the SDK's wheel carries its own Claude Code binary)
//! from PyPI and npm; a warm one only checks a stamp file. Where the registries are unreachable,
//! [`prepare`] fails naming the step; `DARI_TEST_SKIP_CLAUDE_SDK=1` lets the test skip instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

/// Set to `1` to skip (with a note) the tests that need these packages when they cannot be
/// installed, such as on a machine without network. CI does not set it.
pub const ENV_SKIP_CLAUDE_SDK: &str = "DARI_TEST_SKIP_CLAUDE_SDK";
pub const PIP_PACKAGES: &[&str] = &["claude-agent-sdk==0.2.190", "fastapi==0.165.0", "uvicorn==0.55.0"];
pub const NPM_PACKAGES: &[&str] = &["@anthropic-ai/claude-code@2.1.197"];

/// The installed tools.
#[derive(Clone, Debug)]
pub struct ClaudeSdkTools {
    /// `venv/bin` (python, uvicorn) and `npm/bin` (claude), to go first on `PATH`.
    pub bin_dirs: Vec<PathBuf>,
}

impl ClaudeSdkTools {
    /// A `PATH` with the tools' directories first, then this process's.
    pub fn path(&self) -> String {
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let dirs = self.bin_dirs.iter().cloned().chain(std::env::split_paths(&inherited));
        std::env::join_paths(dirs).expect("no `:` in the tools' paths").to_string_lossy().into_owned()
    }
}

/// True when [`ENV_SKIP_CLAUDE_SDK`] asks to skip rather than fail.
pub fn skip_allowed() -> bool {
    std::env::var(ENV_SKIP_CLAUDE_SDK).is_ok_and(|value| value == "1")
}

/// Installs the tools unless the last run did (blocking: run it with `spawn_blocking`). The
/// error says which step failed and its output.
pub fn prepare() -> Result<ClaudeSdkTools, String> {
    static PREPARED: OnceLock<Result<ClaudeSdkTools, String>> = OnceLock::new();
    PREPARED.get_or_init(|| install(&crate::binaries::target_dir().join("test-deps").join("claude-sdk"))).clone()
}

fn install(root: &Path) -> Result<ClaudeSdkTools, String> {
    let venv = root.join("venv");
    let npm = root.join("npm");
    let tools = ClaudeSdkTools { bin_dirs: vec![venv.join("bin"), npm.join("bin")] };
    let stamp = root.join("installed");
    let wanted = format!("{}\n{}\n", PIP_PACKAGES.join("\n"), NPM_PACKAGES.join("\n"));
    let started = Instant::now();
    if std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted) {
        eprintln!("the Claude Agent SDK's dependencies are installed in {}", root.display());
        return Ok(tools);
    }
    eprintln!("installing the Claude Agent SDK's dependencies in {} (once; later runs reuse them)", root.display());
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(|error| format!("remove the old {}: {error}", root.display()))?;
    }
    std::fs::create_dir_all(root).map_err(|error| format!("create {}: {error}", root.display()))?;
    let venv_arg = venv.to_str().ok_or("a UTF-8 target directory")?;
    run("python3", &os(&["-m", "venv", venv_arg]), "create a Python virtual environment")?;
    let python = venv.join("bin").join("python");
    let mut pip_args = vec!["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"];
    pip_args.extend(PIP_PACKAGES);
    run(&python.to_string_lossy(), &os(&pip_args), "pip install the SDK's Python packages")?;
    let mut npm_args = vec!["install", "--global", "--prefix", npm.to_str().ok_or("a UTF-8 target directory")?];
    npm_args.extend(["--no-fund", "--no-audit", "--loglevel=error"]);
    npm_args.extend(NPM_PACKAGES);
    run("npm", &os(&npm_args), "npm install Claude Code")?;
    run(&npm.join("bin").join("claude").to_string_lossy(), &os(&["--version"]), "run the installed `claude`")?;
    std::fs::write(&stamp, wanted).map_err(|error| format!("write {}: {error}", stamp.display()))?;
    eprintln!("installed the Claude Agent SDK's dependencies in {:.0?}", started.elapsed());
    Ok(tools)
}

fn os<'a>(args: &[&'a str]) -> Vec<&'a std::ffi::OsStr> {
    args.iter().map(|arg| std::ffi::OsStr::new(*arg)).collect()
}

fn run(program: &str, args: &[&std::ffi::OsStr], what: &str) -> Result<(), String> {
    #[allow(clippy::disallowed_methods)] // The harness installs what the test's runtime needs.
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{what}: start {program}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!("{what}: {program} exited with {}:\n{tail}", output.status))
}
