//! Starting one child and waiting for it the way an init must: SIGTERM, SIGINT and SIGHUP are
//! passed on to it, and every child that ends is reaped, the orphans of a pid namespace among
//! them. Signals are taken synchronously (blocked, then `sigwait`), so no handler runs.

use std::process::{Command, ExitCode};

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Runs `command` and waits for it, passing signals on: the launcher's way.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    run_as_init(command, || Ok(()))
}

/// Runs `command`, calls `after_start` (to give up what only the start needed), then reaps every
/// child until `command`'s ends, whose status it returns.
pub fn run_as_init(mut command: Command, after_start: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<ExitCode> {
    let signals = handled_signals();
    // Blocked before the start so that none is lost; std's spawn gives the child an empty mask.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None).context("block signals")?;
    let child = command.spawn().with_context(|| format!("start {:?}", command.get_program()))?;
    let child = Pid::from_raw(i32::try_from(child.id()).context("a child's pid")?);
    after_start()?;
    loop {
        if let Some(status) = reap(child)? {
            return Ok(status);
        }
        let signal = signals.wait().context("wait for a signal")?;
        if signal != Signal::SIGCHLD {
            let _ = kill(child, signal);
        }
    }
}

fn handled_signals() -> SigSet {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(signal);
    }
    signals
}

/// Reaps every child that has ended; returns `child`'s exit status once it has.
fn reap(child: Pid) -> anyhow::Result<Option<ExitCode>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                return Ok(Some(ExitCode::from(u8::try_from(code).unwrap_or(1))));
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                return Ok(Some(ExitCode::from(128u8.saturating_add(signal as u8))));
            }
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => anyhow::bail!("the child {child} is gone without a status"),
            Err(error) => return Err(error).context("wait for children"),
        }
    }
}
