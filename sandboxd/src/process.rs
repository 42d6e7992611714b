//! The one place sandboxd starts child processes. Every child gets a working directory, an
//! environment and stdio chosen by the caller, and its own process group, so that it can be
//! killed whole.
//!
//! A shell command forks helpers, pipelines and background jobs; killing only the process we
//! started would leave them running with our pipes open. So every child leads a new process group
//! (`setpgid(0, 0)` in the child, through the safe `process_group(0)`), and the handle signals the
//! group, never a single pid. Dropping a [`GroupChild`] kills its group.
//!
//! No `unsafe` here: `process_group` and `nix::sys::signal::killpg` are safe APIs.

mod supervise;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::time::Instant;

pub use self::supervise::{Completion, Ending, Stream, Supervision, supervise};

/// Everything needed to start a child. The fields are public and have no defaults, so that every
/// caller writes down its working directory, environment and stdio.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: Env,
    pub stdin: Stdin,
    pub stdout: Capture,
    pub stderr: Capture,
}

/// Variables with this prefix configure the daemon (the sandbox token among them) and are
/// removed from every inherited environment.
pub const DAEMON_ENV_PREFIX: &str = "SANDBOXD_";

/// The environment of a child.
#[derive(Clone, Debug)]
pub enum Env {
    /// An empty environment plus exactly these variables: for children that must not see the
    /// daemon's configuration.
    Clear { vars: Vec<(OsString, OsString)> },
    /// The daemon's own environment, without its `SANDBOXD_*` configuration, with these variables
    /// set on top.
    Inherit { overrides: Vec<(OsString, OsString)> },
}

/// What the child reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdin {
    /// `/dev/null`: the child can never wait for input.
    Null,
    /// A pipe, taken from [`GroupChild::stdin`].
    Piped,
}

/// Where the child's stdout or stderr goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    Null,
    /// A pipe, taken from [`GroupChild::stdout`] or [`GroupChild::stderr`].
    Piped,
}

/// How [`terminate_group_gracefully`] ended a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// Every member left within the grace period after SIGTERM.
    Graceful,
    /// Some member was still there after the grace period and got SIGKILL.
    Forced,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("spawn {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("wait for {program} (pid {pid})")]
    Wait {
        program: String,
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("send {signal:?} to process group {pgid}")]
    Signal {
        pgid: i32,
        signal: Signal,
        #[source]
        source: Errno,
    },
}

/// A running child that leads its own process group.
///
/// Dropping it sends SIGKILL to the group (the leader is then reaped by tokio in the background).
pub struct GroupChild {
    program: String,
    pid: u32,
    child: tokio::process::Child,
    /// True once `wait` returned: the leader's pid may be reused from then on.
    leader_reaped: bool,
    /// True once the group was killed after the leader was reaped; nothing is left to signal.
    group_cleared: bool,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// The shell for commands and terminals: `/bin/bash`, or `/bin/sh` where there is no bash.
pub fn default_shell() -> &'static str {
    if Path::new("/bin/bash").exists() { "/bin/bash" } else { "/bin/sh" }
}

/// Sends `signal` to every process in the group `pgid`. A group that no longer exists is not an
/// error: there is nothing left to signal.
pub fn kill_group(pgid: Pid, signal: Signal) -> Result<(), ProcessError> {
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(ProcessError::Signal { pgid: pgid.as_raw(), signal, source }),
    }
}

/// Asks the group `pgid` to stop with SIGTERM, and sends SIGKILL to whatever is left after
/// `grace`. For a group whose leader is our own child, prefer [`GroupChild::terminate_gracefully`]:
/// an unreaped leader is a zombie that still counts as a member, so this function alone would
/// always wait the whole grace period for it.
pub async fn terminate_group_gracefully(pgid: Pid, grace: Duration) -> Result<Termination, ProcessError> {
    kill_group(pgid, Signal::SIGTERM)?;
    finish_group(pgid, Instant::now() + grace).await
}

impl ChildSpec {
    /// Starts the child as the leader of a new process group.
    #[allow(clippy::disallowed_methods, reason = "this is the one helper that starts processes")]
    pub fn spawn(&self) -> Result<GroupChild, ProcessError> {
        let program = self.program.to_string_lossy().into_owned();
        let mut command = tokio::process::Command::new(&self.program);
        command.args(&self.args).process_group(0).kill_on_drop(true);
        if !is_process_cwd(&self.cwd) {
            command.current_dir(&self.cwd);
        }
        match &self.env {
            Env::Clear { vars } => {
                command.env_clear().envs(vars.iter().map(|(key, value)| (key, value)));
            }
            Env::Inherit { overrides } => {
                // The daemon's own configuration (its token above all) never reaches a child.
                for (key, _) in std::env::vars_os() {
                    if key.to_string_lossy().starts_with(DAEMON_ENV_PREFIX) {
                        command.env_remove(key);
                    }
                }
                command.envs(overrides.iter().map(|(key, value)| (key, value)));
            }
        }
        command.stdin(match self.stdin {
            Stdin::Null => Stdio::null(),
            Stdin::Piped => Stdio::piped(),
        });
        command.stdout(self.stdout.stdio()).stderr(self.stderr.stdio());
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn { program: program.clone(), source })?;
        let pid = child.id().expect("a child that was just spawned and not yet waited for has a pid");
        Ok(GroupChild {
            program,
            pid,
            leader_reaped: false,
            group_cleared: false,
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
        })
    }
}

/// Whether `cwd` is the daemon's own working directory, so that a child can start there without
/// `current_dir`.
///
/// That matters for speed: std starts a child with a working directory through `posix_spawn`
/// only if it finds `posix_spawn_file_actions_addchdir_np` with `dlsym`, which a static glibc
/// binary never does, so it falls back to fork + exec and copies the daemon's page tables. The
/// daemon runs in the workspace root (see `main.rs`), where most children start, and those
/// children get `posix_spawn` (`clone(CLONE_VM | CLONE_VFORK)`). A working directory that was
/// removed and created again has another inode, and `getcwd` then names the old one `(deleted)`:
/// it does not compare equal.
fn is_process_cwd(cwd: &Path) -> bool {
    std::env::current_dir().is_ok_and(|process_cwd| process_cwd == cwd)
}

impl Capture {
    fn stdio(self) -> Stdio {
        match self {
            Capture::Null => Stdio::null(),
            Capture::Piped => Stdio::piped(),
        }
    }
}

// === impl GroupChild ===

impl GroupChild {
    /// The leader's pid, which is also the process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn pgid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.pid).expect("Linux pids fit in an i32"))
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    /// Sends `signal` to the whole group; a group that is already gone is not an error.
    pub fn kill_group(&self, signal: Signal) -> Result<(), ProcessError> {
        kill_group(self.pgid(), signal)
    }

    /// Waits for the leader to exit and reaps it. Other members of the group may still run.
    ///
    /// # Cancel safety
    ///
    /// This function is cancel safe, like `tokio::process::Child::wait`.
    pub async fn wait(&mut self) -> Result<ExitStatus, ProcessError> {
        let status = self.child.wait().await.map_err(|source| ProcessError::Wait {
            program: self.program.clone(),
            pid: self.pid,
            source,
        })?;
        self.leader_reaped = true;
        Ok(status)
    }

    /// Kills what is left of the group once the leader has exited: background jobs that would
    /// otherwise outlive the command and keep its pipes open.
    ///
    /// The leader is reaped by then, so in principle its pid could be reused as the id of a new
    /// group. That needs the whole group to be gone and the pid allocator to wrap around between
    /// the reap and this call, which we accept.
    pub fn kill_remaining(&mut self) -> Result<(), ProcessError> {
        let result = self.kill_group(Signal::SIGKILL);
        self.group_cleared = self.leader_reaped;
        result
    }

    /// Sends SIGKILL to the whole group and reaps the leader.
    pub async fn kill_and_reap(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Err(error) = self.kill_group(Signal::SIGKILL) {
            // Still make sure the leader dies, so that the wait below ends.
            tracing::warn!("failed to {error:#}; killing the leader alone");
            if let Err(error) = self.child.start_kill() {
                tracing::warn!(pid = self.pid, "failed to kill {}: {error:#}", self.program);
            }
        }
        let status = self.wait().await?;
        self.group_cleared = true;
        Ok(status)
    }

    /// Sends SIGTERM to the group, waits up to `grace` for the leader and then for the rest of
    /// the group, and sends SIGKILL to whatever is left.
    pub async fn terminate_gracefully(&mut self, grace: Duration) -> Result<ExitStatus, ProcessError> {
        let deadline = Instant::now() + grace;
        self.kill_group(Signal::SIGTERM)?;
        match tokio::time::timeout_at(deadline, self.wait()).await {
            Ok(status) => {
                let status = status?;
                finish_group(self.pgid(), deadline).await?;
                self.group_cleared = true;
                Ok(status)
            }
            Err(_elapsed) => self.kill_and_reap().await,
        }
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        if !self.group_cleared
            && let Err(error) = self.kill_group(Signal::SIGKILL)
        {
            tracing::warn!("failed to {error:#} while dropping its handle");
        }
    }
}

/// Polls until the group is gone or `deadline` passes, then sends SIGKILL to what is left.
async fn finish_group(pgid: Pid, deadline: Instant) -> Result<Termination, ProcessError> {
    const POLL: Duration = Duration::from_millis(10);
    loop {
        if !group_is_running(pgid) {
            return Ok(Termination::Graceful);
        }
        if Instant::now() >= deadline {
            kill_group(pgid, Signal::SIGKILL)?;
            return Ok(Termination::Forced);
        }
        tokio::time::sleep(POLL.min(deadline - Instant::now())).await;
    }
}

/// Whether a member of the group is still running. Members that have exited but are not reaped
/// yet (zombies) still count for `killpg`, and may stay until their parent or PID 1 reaps them,
/// which in a container may be never; so `/proc` decides, and `killpg` only where it is missing.
fn group_is_running(pgid: Pid) -> bool {
    if killpg(pgid, None) == Err(Errno::ESRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return true };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        // `pid (comm) state ppid pgrp ...`, where comm may hold spaces and parentheses.
        let Some((_, fields)) = stat.rsplit_once(')') else { return false };
        let mut fields = fields.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|pgrp| pgrp.parse::<i32>().ok());
        pgrp == Some(pgid.as_raw()) && !matches!(state, Some("Z" | "X"))
    })
}
