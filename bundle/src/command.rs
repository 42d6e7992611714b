//! The one place this crate starts child processes (only `git`), so that every call site
//! chooses the working directory, the environment and the stdio on purpose.

use std::path::Path;
use std::process::{Command, Stdio};

/// The environment a child process sees.
pub(crate) struct ChildEnv<'a> {
    /// Whether the child starts from this process's environment or from an empty one.
    pub(crate) inherit: bool,
    /// Variables set on top.
    pub(crate) set: &'a [(&'a str, &'a str)],
    /// Variables removed from the inherited environment.
    pub(crate) remove: &'a [&'a str],
}

/// Where a child process's standard streams go.
pub(crate) struct ChildStdio {
    pub(crate) stdin: Stdio,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
}

/// Builds a command for `program` with its working directory, environment and stdio chosen.
#[allow(clippy::disallowed_methods)]
pub(crate) fn command(program: &str, cwd: &Path, env: &ChildEnv<'_>, stdio: ChildStdio) -> Command {
    let mut command = Command::new(program);
    command.current_dir(cwd);
    if !env.inherit {
        command.env_clear();
    }
    for name in env.remove {
        command.env_remove(name);
    }
    for (name, value) in env.set {
        command.env(name, value);
    }
    command.stdin(stdio.stdin).stdout(stdio.stdout).stderr(stdio.stderr);
    command
}
