//! `exec`: runs a program for control (not for the model) in the workspace, streaming stdout and
//! stderr apart as they arrive, with stdin written and closed, and the whole process group killed
//! on timeout or cancellation.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::process::{self, Capture, ChildSpec, Ending, Env, ProcessError, Stdin, Stream, Supervision};
use crate::tools::Workspace;

/// One command to run. Exactly one of `argv` and `shell` is given.
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    /// The program and its arguments, run directly (the program is looked up in `PATH`).
    pub argv: Option<Vec<String>>,
    /// A command line for the shell (`/bin/bash -c`, or `/bin/sh -c` where there is no bash).
    pub shell: Option<String>,
    /// The working directory, resolved like a tool's path; the workspace root when absent.
    pub cwd: Option<String>,
    /// Variables set on top of the daemon's environment (after `PWD`, so they may override it).
    pub env: BTreeMap<String, String>,
    /// Written to the program's stdin, which is then closed; without it stdin is `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Kill the group after this long; `None` lets it run until it exits or is cancelled.
    pub timeout: Option<Duration>,
}

/// What happens while a command runs, in order; `Exited` is always last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecEvent {
    Stdout(Bytes),
    Stderr(Bytes),
    Exited { code: Option<i32>, signal: Option<i32>, timed_out: bool },
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The exit code, when it exited by itself.
    pub code: Option<i32>,
    /// The signal that killed it (SIGKILL after a timeout or a cancellation).
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub cancelled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("invalid exec request: {reason}")]
    InvalidRequest { reason: String },
    #[error("use {cwd} as the working directory: {reason}")]
    WorkingDirectory { cwd: String, reason: String },
    #[error("spawn {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("wait for {program}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("signal {program}")]
    Signal {
        program: String,
        #[source]
        source: nix::errno::Errno,
    },
}

/// Runs `request` in `workspace`, sending its output to `events` as it arrives and
/// [`ExecEvent::Exited`] at the end. A receiver that stops reading slows the command down but
/// not its timeout; a receiver that is gone only loses the events.
pub async fn exec(
    workspace: &Workspace,
    request: ExecRequest,
    events: mpsc::Sender<ExecEvent>,
    cancel: CancellationToken,
) -> Result<ExecOutcome, ExecError> {
    let (program, args) = command_line(&request)?;
    let cwd_written = request.cwd.as_deref().unwrap_or("");
    let cwd = workspace
        .resolve(cwd_written)
        .map_err(|error| ExecError::WorkingDirectory { cwd: cwd_written.to_owned(), reason: error.0 })?;
    if !cwd.is_dir() {
        let reason = "not an existing directory".to_owned();
        return Err(ExecError::WorkingDirectory { cwd: cwd_written.to_owned(), reason });
    }
    if request.env.iter().any(|(key, value)| key.is_empty() || key.contains(['=', '\0']) || value.contains('\0')) {
        let reason = "environment names must be non-empty without `=` or NUL, values without NUL".to_owned();
        return Err(ExecError::InvalidRequest { reason });
    }
    let mut overrides = vec![(OsString::from("PWD"), cwd.as_os_str().to_owned())];
    overrides.extend(request.env.into_iter().map(|(key, value)| (key.into(), value.into())));
    let spec = ChildSpec {
        program,
        args,
        cwd,
        env: Env::Inherit { overrides },
        stdin: if request.stdin.is_some() { Stdin::Piped } else { Stdin::Null },
        stdout: Capture::Piped,
        stderr: Capture::Piped,
    };
    let mut child = spec.spawn().map_err(ExecError::from)?;
    let supervision = Supervision {
        deadline: request.timeout.map(|timeout| Instant::now() + timeout),
        cancel,
        stdin: request.stdin.map(Bytes::from),
    };
    let wrap = |stream, chunk| match stream {
        Stream::Stdout => ExecEvent::Stdout(chunk),
        Stream::Stderr => ExecEvent::Stderr(chunk),
    };
    let completion = process::supervise(&mut child, supervision, events.clone(), wrap).await?;
    let outcome = ExecOutcome {
        code: completion.status.code(),
        signal: completion.status.signal(),
        timed_out: completion.ending == Ending::TimedOut,
        cancelled: completion.ending == Ending::Cancelled,
    };
    let exited = ExecEvent::Exited { code: outcome.code, signal: outcome.signal, timed_out: outcome.timed_out };
    // A receiver that is gone does not want it.
    let _ = events.send(exited).await;
    Ok(outcome)
}

/// The program and arguments for `request`, checked.
fn command_line(request: &ExecRequest) -> Result<(OsString, Vec<OsString>), ExecError> {
    let invalid = |reason: &str| ExecError::InvalidRequest { reason: reason.to_owned() };
    let (program, args) = match (&request.argv, &request.shell) {
        (Some(argv), None) => {
            let (program, args) = argv.split_first().ok_or_else(|| invalid("argv is empty"))?;
            if program.is_empty() {
                return Err(invalid("the program (argv[0]) is empty"));
            }
            (OsString::from(program), args.iter().map(OsString::from).collect())
        }
        (None, Some(command)) => (process::default_shell().into(), vec!["-c".into(), command.into()]),
        (Some(_), Some(_)) => return Err(invalid("give either argv or shell, not both")),
        (None, None) => return Err(invalid("give argv or shell")),
    };
    if program.as_encoded_bytes().contains(&0) || args.iter().any(|arg| arg.as_encoded_bytes().contains(&0)) {
        return Err(invalid("the command contains a NUL byte"));
    }
    Ok((program, args))
}

impl From<ProcessError> for ExecError {
    fn from(error: ProcessError) -> ExecError {
        match error {
            ProcessError::Spawn { program, source } => ExecError::Spawn { program, source },
            ProcessError::Wait { program, source, .. } => ExecError::Wait { program, source },
            ProcessError::Signal { pgid, source, .. } => ExecError::Signal { program: format!("group {pgid}"), source },
        }
    }
}
