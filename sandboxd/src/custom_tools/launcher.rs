//! Choosing the interpreter of a handler from what the sandbox's image has: `python3` for Python;
//! `tsx`, a node that strips types (22.6 or newer), or plain node for TypeScript and JavaScript.
//!
//! Programs are looked up in the `PATH` the handler will see (the tools' environment, else the
//! daemon's), and started by their full path.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::handler::{Handler, Language};
use super::logs;
use crate::process::{Capture, ChildSpec, Ending, Env, Stdin};

/// The first node that can strip TypeScript types (with `--experimental-strip-types`).
const NODE_STRIPS_TYPES: (u32, u32) = (22, 6);
/// The first node that detects ES module syntax without a flag.
const NODE_DETECTS_MODULES: (u32, u32) = (22, 7);
/// The first node that strips types without the flag.
const NODE_STRIPS_TYPES_BY_DEFAULT: (u32, u32) = (23, 6);
/// How long `node --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Where programs are looked up when no `PATH` is set at all.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which embedded runner script the interpreter runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Runner {
    /// `runner.py`, passed with `-c`.
    Python,
    /// `runner.mjs`, written to a file first.
    Module,
}

/// How to start a handler's interpreter: `program flags... <runner> <handler> <function> <shown>`.
#[derive(Clone, Debug)]
pub(super) struct Launch {
    pub(super) program: PathBuf,
    pub(super) flags: Vec<OsString>,
    pub(super) runner: Runner,
}

/// Finds the interpreter for `handler`, or says what is missing. `env` is the environment the
/// handler will get, in which `node --version` runs.
pub(super) async fn choose(
    tool_name: &str,
    handler: &Handler,
    env: &[(OsString, OsString)],
    cancel: &CancellationToken,
) -> Result<Launch, String> {
    let search_path = search_path(env);
    let find = |program: &str| find_program(program, &search_path);
    if handler.language == Language::Python {
        let Some(program) = find("python3") else {
            return Err(format!(
                "custom tool {tool_name} needs python3, which is not installed in the sandbox; \
                 add it with sandbox.runtimes.python or sandbox.packages.apt"
            ));
        };
        let flags = vec!["-u".into(), "-B".into()];
        return Ok(Launch { program, flags, runner: Runner::Python });
    }
    if let Some(program) = find("tsx") {
        return Ok(Launch { program, flags: Vec::new(), runner: Runner::Module });
    }
    let node = find("node");
    let version = match &node {
        Some(node) => node_version(node, &handler.dir, env, cancel).await,
        None => None,
    };
    let parsed = version.as_deref().and_then(parse_version);
    match (node, handler.language) {
        (Some(program), _) if parsed.is_some_and(|version| version >= NODE_STRIPS_TYPES) => {
            let mut flags: Vec<OsString> = vec!["--disable-warning=ExperimentalWarning".into()];
            if parsed.is_some_and(|version| version < NODE_STRIPS_TYPES_BY_DEFAULT) {
                flags.push("--experimental-strip-types".into());
            }
            if parsed.is_some_and(|version| version < NODE_DETECTS_MODULES) {
                // Without it, 22.6 reads a `.ts` file outside a `"type": "module"` package as CommonJS.
                flags.push("--experimental-detect-module".into());
            }
            Ok(Launch { program, flags, runner: Runner::Module })
        }
        (Some(program), Language::JavaScript) => Ok(Launch { program, flags: Vec::new(), runner: Runner::Module }),
        (Some(_), _) => {
            let has = match version {
                Some(version) => format!("node {version}"),
                None => "a node whose version could not be read".to_owned(),
            };
            Err(format!(
                "custom tool {tool_name} is TypeScript ({}) and needs tsx or node 22.6 or newer; this sandbox has {has}",
                handler.shown
            ))
        }
        (None, Language::JavaScript) => Err(format!(
            "custom tool {tool_name} ({}) needs node, which is not installed in the sandbox; \
             add it with sandbox.runtimes.node or sandbox.packages.apt",
            handler.shown
        )),
        (None, _) => Err(format!(
            "custom tool {tool_name} is TypeScript ({}) and needs tsx or node 22.6 or newer; \
             this sandbox has neither (add node with sandbox.runtimes.node)",
            handler.shown
        )),
    }
}

/// The `PATH` the handler will see.
pub(super) fn search_path(env: &[(OsString, OsString)]) -> OsString {
    let overridden = env.iter().rev().find(|(key, _)| key == "PATH").map(|(_, value)| value.clone());
    overridden.or_else(|| std::env::var_os("PATH")).unwrap_or_else(|| DEFAULT_PATH.into())
}

/// The first executable regular file named `program` in `search_path`.
pub(super) fn find_program(program: &str, search_path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(search_path).filter(|dir| dir.is_absolute()).map(|dir| dir.join(program)).find(|candidate| {
        std::fs::metadata(candidate)
            .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
    })
}

/// What `node --version` prints (`v20.20.2`), or `None` if it fails.
async fn node_version(
    node: &Path,
    cwd: &Path,
    env: &[(OsString, OsString)],
    cancel: &CancellationToken,
) -> Option<String> {
    let spec = ChildSpec {
        program: node.as_os_str().to_owned(),
        args: vec!["--version".into()],
        cwd: cwd.to_path_buf(),
        env: Env::Inherit { overrides: env.to_vec() },
        stdin: Stdin::Null,
        stdout: Capture::Piped,
        stderr: Capture::Null,
    };
    let mut child = spec.spawn().inspect_err(|error| tracing::debug!("failed to {error:#}")).ok()?;
    let supervision = logs::bounded(VERSION_TIMEOUT, cancel.child_token(), None);
    let (completion, output) = logs::run_collecting(&mut child, supervision, 1024).await;
    let completion = completion.inspect_err(|error| tracing::debug!("failed to {error:#}")).ok()?;
    let version = output.finish().trim().to_owned();
    (completion.ending == Ending::Exited && completion.status.success() && !version.is_empty()).then_some(version)
}

/// `v22.6.0` as `(22, 6)`.
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().strip_prefix('v').unwrap_or(version).split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn node_versions_parse() {
        assert_eq!(parse_version("v20.20.2"), Some((20, 20)));
        assert_eq!(parse_version("v22.6.0\n"), Some((22, 6)));
        assert_eq!(parse_version("23.11.1"), Some((23, 11)));
        assert_eq!(parse_version("nonsense"), None);
    }
}
