//! The `local` provider: `sandboxd` as a child process of the control plane, one per sandbox, with
//! a workspace directory per session under the data directory.
//!
//! The workspace directory outlives the sandbox when the sandbox dies unexpectedly (a crash of
//! control or of the daemon): the next sandbox of the session finds the files where they were.
//! An idle teardown archives the workspace to the blob store first and then removes the
//! directory; the next sandbox starts empty and is restored from the archive.
//!
//! The daemon runs in its own process group, so that a terminal's Ctrl-C reaches control, which
//! then shuts its sandboxes down in order. If control dies without that, the daemons keep
//! running and dial the restarted control, which adopts them. Isolation (namespaces, cgroups)
//! comes with the jail; today a local sandbox is a plain child process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::provider::{ProvisionRequest, Provisioned, SandboxProvider, sandboxd_environment};

/// How long a daemon gets to shut down after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct LocalProvider {
    /// The `sandboxd` binary.
    sandboxd: PathBuf,
    /// `<data dir>/sandboxes`: `sessions/<id>/workspace` and `logs/<sandbox id>.log`.
    root: PathBuf,
    /// The operator's `--sandbox-env`: set in every daemon's environment, which its processes
    /// inherit (a runtime's `sandbox.env` and secrets override it).
    extra_env: BTreeMap<String, String>,
}

impl LocalProvider {
    pub fn new(sandboxd: PathBuf, root: PathBuf, extra_env: BTreeMap<String, String>) -> LocalProvider {
        LocalProvider { sandboxd, root, extra_env }
    }

    /// The session's workspace directory.
    pub fn workspace(&self, session_id: &str) -> PathBuf {
        self.root.join("sessions").join(session_id).join("workspace")
    }

    async fn start(&self, request: &ProvisionRequest) -> anyhow::Result<Provisioned> {
        let workspace = self.workspace(&request.session_id);
        let fresh_workspace = !workspace.exists();
        std::fs::create_dir_all(&workspace)
            .with_context(|| format!("create the workspace directory {}", workspace.display()))?;
        let logs = self.root.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
        let log_path = logs.join(format!("{}.log", request.sandbox_id));
        let log = std::fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let log_err = log.try_clone().context("share the sandbox's log file")?;

        let mut environment = sandboxd_environment(request, &workspace.to_string_lossy());
        // Control restarts quickly; a local daemon should not wait long to dial it again.
        environment.insert("SANDBOXD_MAX_BACKOFF_MS".to_owned(), "1000".to_owned());
        for name in ["PATH", "LANG", "TZ", "SANDBOXD_LOG"] {
            if let Some(value) = std::env::var_os(name) {
                environment.insert(name.to_owned(), value.to_string_lossy().into_owned());
            }
        }
        environment.insert("HOME".to_owned(), workspace.to_string_lossy().into_owned());
        // The operator's variables come last but cannot replace the daemon's own configuration
        // (the configuration refuses SANDBOXD_* names).
        environment.extend(self.extra_env.iter().map(|(key, value)| (key.clone(), value.clone())));
        // The manifest's variables and secrets override the operator's.
        environment.extend(request.env.0.iter().map(|(key, value)| (key.clone(), value.clone())));
        #[allow(clippy::disallowed_methods, reason = "the local provider is the control plane's one process starter")]
        let mut command = tokio::process::Command::new(&self.sandboxd);
        command
            .arg("run")
            .env_clear()
            .envs(&environment)
            .current_dir(&workspace)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command
            .spawn()
            .with_context(|| format!("start {} (set --sandboxd to its path)", self.sandboxd.display()))?;
        let pid = child.id().context("read the daemon's pid")?;
        let (exited_tx, exited) = oneshot::channel();
        tokio::spawn(async move {
            let reason = match child.wait().await {
                Ok(status) => format!("sandboxd exited ({status})"),
                Err(error) => format!("wait for sandboxd: {error}"),
            };
            let _ = exited_tx.send(reason);
        });
        tracing::info!(sandbox_id = %request.sandbox_id, pid, workspace = %workspace.display(), "started a local sandbox");
        let handle = json!({"pid": pid, "workspace": workspace, "log": log_path});
        Ok(Provisioned { handle, exited: Some(exited), fresh_workspace })
    }

    async fn stop(&self, sandbox_id: &str, handle: &Value, keep_workspace: bool) -> anyhow::Result<()> {
        if let Some(pid) = handle["pid"].as_i64().and_then(|pid| i32::try_from(pid).ok()) {
            let pid = Pid::from_raw(pid);
            if is_daemon_of(pid, sandbox_id) {
                let _ = kill(pid, Signal::SIGTERM);
                let deadline = tokio::time::Instant::now() + STOP_GRACE;
                while is_daemon_of(pid, sandbox_id) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if is_daemon_of(pid, sandbox_id) {
                    tracing::warn!(sandbox_id, "sandboxd did not stop after SIGTERM; killing its process group");
                    let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
                }
            }
        }
        if let Some(workspace) = handle["workspace"].as_str() {
            kill_stragglers(Path::new(workspace));
            if !keep_workspace {
                remove_workspace(Path::new(workspace))?;
            }
        }
        Ok(())
    }
}

impl SandboxProvider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn shares_host_network(&self) -> bool {
        true
    }

    fn provision<'a>(&'a self, request: &'a ProvisionRequest) -> BoxFuture<'a, anyhow::Result<Provisioned>> {
        Box::pin(self.start(request))
    }

    fn destroy<'a>(
        &'a self,
        sandbox_id: &'a str,
        handle: &'a Value,
        keep_workspace: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.stop(sandbox_id, handle, keep_workspace))
    }
}

/// True when `pid` is alive and is the daemon of `sandbox_id`: a pid recorded by an earlier
/// control process may since have been reused by an unrelated process, which must not be killed.
fn is_daemon_of(pid: Pid, sandbox_id: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
    let wanted = format!("SANDBOXD_SANDBOX_ID={sandbox_id}");
    environ.split(|byte| *byte == 0).any(|entry| entry == wanted.as_bytes())
}

/// Kills what a dead daemon left running: its children live in process groups of their own and
/// outlive a daemon killed with SIGKILL. Without a pid namespace to end them all, they are found by
/// their working directory, which is inside the sandbox's workspace.
fn kill_stragglers(workspace: &Path) {
    let Ok(workspace) = workspace.canonicalize() else { return };
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else { continue };
        if cwd.starts_with(&workspace) {
            tracing::info!(pid, cwd = %cwd.display(), "killing a process the sandbox left behind");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn remove_workspace(workspace: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(workspace) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("remove the workspace {}", workspace.display())),
    }
}
