//! The jail's cost: session create → sandbox ready on a server whose local sandboxes are jailed,
//! beside the same on a server whose sandboxes are plain child processes, the two taking turns
//! in one run; and `sandboxd --version` started in a jail beside the same started plainly.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};

use super::sessions::{Api, WARMUP_SESSIONS, time_to_ready};
use super::{Samples, command};
use crate::control::ControlServer;

/// What the run measured.
#[derive(Debug, Default)]
pub struct JailTimes {
    /// Session create → ready, jailed.
    pub jailed: Samples,
    /// Session create → ready, unjailed.
    pub plain: Samples,
    /// Exec → exit of `sandboxd jail … -- sandboxd --version`.
    pub jail_spawn: Samples,
    /// Exec → exit of `sandboxd --version`.
    pub plain_spawn: Samples,
}

/// One server of each kind, with the same agent published as `(server, agent id)`.
pub struct Servers<'a> {
    pub jailed: (&'a ControlServer, &'a str),
    pub plain: (&'a ControlServer, &'a str),
}

/// Times `sessions` session creations on each server and as many spawns of each kind, taking turns.
pub async fn measure(servers: &Servers<'_>, sandboxd: &Path, sessions: usize) -> anyhow::Result<JailTimes> {
    let (jailed, plain) = (Api::new(servers.jailed.0)?, Api::new(servers.plain.0)?);
    let scratch = tempfile::tempdir().context("a workspace for the spawns")?;
    let mut times = JailTimes::default();
    for index in 0..WARMUP_SESSIONS + sessions {
        let timed = index >= WARMUP_SESSIONS;
        let jailed_ready = time_to_ready(&jailed, servers.jailed.1).await?;
        let plain_ready = time_to_ready(&plain, servers.plain.1).await?;
        let mut in_jail = command(sandboxd);
        in_jail
            .args(["jail", "--sandbox-id", &format!("bench-jail-{index}"), "--workspace"])
            .arg(scratch.path())
            .args(["--", "/run/dari/sandboxd", "--version"]);
        let jail_spawn = time_exit(in_jail, "sandboxd jail -- sandboxd --version").await?;
        let mut plainly = command(sandboxd);
        plainly.arg("--version");
        let plain_spawn = time_exit(plainly, "sandboxd --version").await?;
        if timed {
            times.jailed.push(jailed_ready);
            times.plain.push(plain_ready);
            times.jail_spawn.push(jail_spawn);
            times.plain_spawn.push(plain_spawn);
        }
    }
    Ok(times)
}

/// Exec → exit of `command`, which must succeed.
async fn time_exit(mut command: tokio::process::Command, what: &str) -> anyhow::Result<std::time::Duration> {
    let started = Instant::now();
    let output =
        command.stdout(Stdio::null()).stderr(Stdio::piped()).output().await.with_context(|| format!("run {what}"))?;
    if !output.status.success() {
        bail!("{what} exited with {}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(started.elapsed())
}
