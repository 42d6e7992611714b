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
//! running and dial the restarted control, which adopts them.
//!
//! With a [`LocalJail`] (the default where the machine allows it, see `docs/sandboxes.md`) the
//! daemon runs under `sandboxd jail`: new namespaces, a read-only root, the workspace at
//! `/workspace`, cgroup limits from `sandbox.resources`, and loopback only unless the session has
//! internet access (then the host's network). Either way it dials control through the Unix socket
//! in [`link_dir`], bound into the jail. Without a jail it is a plain child process that dials
//! the link's TCP URL.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use dari_protocol::manifest::reserved_env_name;

use super::provider::{ProvisionRequest, Provisioned, SandboxProvider, sandboxd_environment};

/// How long a daemon gets to shut down after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The link's socket in [`link_dir`].
pub const LINK_SOCKET: &str = "control.sock";
/// Where a jailed daemon finds the link (sandboxd binds [`link_dir`] at `/run/dari/link`).
const LINK_URL_IN_JAIL: &str = "unix:///run/dari/link/control.sock";
/// `PATH` in a jail, unless the operator's or the manifest's environment sets one.
pub(crate) const JAIL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The workspace inside a jail.
const WORKSPACE_IN_JAIL: &str = "/workspace";

/// How this server jails its local sandboxes.
#[derive(Clone, Debug)]
pub struct LocalJail {
    /// A root file system directory (images/rootfs.sh); `None`: the host's system directories.
    pub root_fs: Option<PathBuf>,
    /// The most processes a sandbox may run at once.
    pub pids_max: u64,
    /// The memory limit of a sandbox whose manifest sets no `sandbox.resources.memory_mb`.
    pub default_memory_mb: u64,
}

/// The largest `/tmp` (and `/dev/shm`) of a jail, in MiB.
const MAX_TMP_MB: u64 = 512;

/// Makes the directory of the sandboxes' workspaces and logs, readable by the server's user only:
/// a sandbox's files (a setuid binary among them, made by root in a jail) must not be reachable
/// by other users of the host.
pub fn prepare_root(sandboxes_root: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(sandboxes_root).with_context(|| format!("create {}", sandboxes_root.display()))?;
    std::fs::set_permissions(sandboxes_root, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("make {} private", sandboxes_root.display()))
}

/// The directory of the link's Unix socket under the sandboxes' directory: bound read-only into
/// every jail, so that a sandbox without a network still reaches control.
pub fn link_dir(sandboxes_root: &Path) -> PathBuf {
    sandboxes_root.join("link")
}

/// Checks that this machine can make a jail (namespaces, mounts, cgroups) by running `sandboxd
/// --version` in one: the reason it cannot, otherwise.
pub async fn probe_jail(sandboxd: &Path, sandboxes_root: &Path, jail: &LocalJail) -> anyhow::Result<()> {
    let workspace = sandboxes_root.join("probe");
    std::fs::create_dir_all(&workspace).with_context(|| format!("create {}", workspace.display()))?;
    let sandbox_id = crate::ids::new_id("probe");
    let mut arguments = jail_arguments(jail, &sandbox_id, &workspace, None);
    arguments.extend(["--".into(), "/run/dari/sandboxd".into(), "--version".into()]);
    #[allow(clippy::disallowed_methods, reason = "the local provider is the control plane's one process starter")]
    let output = tokio::process::Command::new(sandboxd)
        .args(&arguments)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("start {} (set --sandboxd to its path)", sandboxd.display()))?;
    let _ = std::fs::remove_dir(&workspace);
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success() && stdout.starts_with("sandboxd"),
        "{} ({})",
        String::from_utf8_lossy(&output.stderr).trim(),
        output.status
    );
    Ok(())
}

/// `sandboxd jail`'s flags for one sandbox (the resources are added by the caller).
pub(crate) fn jail_arguments(
    jail: &LocalJail,
    sandbox_id: &str,
    workspace: &Path,
    link_dir: Option<&Path>,
) -> Vec<OsString> {
    let mut arguments: Vec<OsString> = vec![
        "jail".into(),
        "--sandbox-id".into(),
        sandbox_id.into(),
        "--workspace".into(),
        workspace.into(),
        "--pids-max".into(),
        jail.pids_max.to_string().into(),
    ];
    if let Some(root_fs) = &jail.root_fs {
        arguments.extend(["--root".into(), root_fs.into()]);
    }
    if let Some(link_dir) = link_dir {
        arguments.extend(["--link-dir".into(), link_dir.into()]);
    }
    arguments
}

#[derive(Debug)]
pub struct LocalProvider {
    /// The `sandboxd` binary.
    sandboxd: PathBuf,
    /// `<data dir>/sandboxes`: `sessions/<id>/workspace` and `logs/<sandbox id>.log`.
    root: PathBuf,
    /// The operator's `--sandbox-env`: set in every daemon's environment, which its processes
    /// inherit (a runtime's `sandbox.env` and secrets override it).
    extra_env: BTreeMap<String, String>,
    /// `None`: sandboxes are plain child processes.
    jail: Option<LocalJail>,
}

impl LocalProvider {
    pub fn new(
        sandboxd: PathBuf,
        root: PathBuf,
        extra_env: BTreeMap<String, String>,
        jail: Option<LocalJail>,
    ) -> LocalProvider {
        LocalProvider { sandboxd, root, extra_env, jail }
    }

    /// The session's workspace directory.
    pub fn workspace(&self, session_id: &str) -> PathBuf {
        self.root.join("sessions").join(session_id).join("workspace")
    }

    async fn start(&self, request: &ProvisionRequest) -> anyhow::Result<Provisioned> {
        // The manifest refuses these names; a version published before it did is refused here.
        if let Some((name, reason)) =
            request.env.0.keys().find_map(|name| reserved_env_name(name).map(|reason| (name, reason)))
        {
            anyhow::bail!("the sandbox's environment names {name}: {reason}");
        }
        let workspace = self.workspace(&request.session_id);
        let fresh_workspace = !workspace.exists();
        std::fs::create_dir_all(&workspace)
            .with_context(|| format!("create the workspace directory {}", workspace.display()))?;
        let logs = self.root.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
        let log_path = logs.join(format!("{}.log", request.sandbox_id));
        let log = std::fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let log_err = log.try_clone().context("share the sandbox's log file")?;

        let (program, arguments, home) = match &self.jail {
            Some(jail) => {
                let mut arguments = jail_arguments(jail, &request.sandbox_id, &workspace, Some(&link_dir(&self.root)));
                if request.internet_access {
                    arguments.push("--host-network".into());
                }
                if let Some(layer) = &request.runtime_layer {
                    arguments.extend(["--layer".into(), layer.into()]);
                }
                let memory_mb = request.resources.memory_mb.map_or(jail.default_memory_mb, u64::from);
                // /tmp and /dev/shm count against the memory limit: a quarter each at most.
                let tmp_mb = (memory_mb / 4).clamp(1, MAX_TMP_MB);
                arguments.extend([
                    "--memory-mb".into(),
                    memory_mb.to_string().into(),
                    "--tmp-mb".into(),
                    tmp_mb.to_string().into(),
                ]);
                if let Some(cpu) = request.resources.cpu {
                    arguments.extend(["--cpus".into(), cpu.to_string().into()]);
                }
                (&self.sandboxd, arguments, PathBuf::from(WORKSPACE_IN_JAIL))
            }
            None => (&self.sandboxd, vec!["run".into()], workspace.clone()),
        };
        let mut environment = sandboxd_environment(request, &home.to_string_lossy());
        if self.jail.is_some() {
            environment.insert("SANDBOXD_CONTROL_URL".to_owned(), LINK_URL_IN_JAIL.to_owned());
        }
        // Control restarts quickly; a local daemon should not wait long to dial it again.
        environment.insert("SANDBOXD_MAX_BACKOFF_MS".to_owned(), "1000".to_owned());
        for name in ["PATH", "LANG", "TZ", "SANDBOXD_LOG"] {
            if let Some(value) = std::env::var_os(name) {
                environment.insert(name.to_owned(), value.to_string_lossy().into_owned());
            }
        }
        if self.jail.is_some() {
            // The host's PATH may name directories the jail does not have.
            environment.insert("PATH".to_owned(), JAIL_PATH.to_owned());
        }
        environment.insert("HOME".to_owned(), home.to_string_lossy().into_owned());
        // The operator's variables come last but cannot replace the daemon's own configuration
        // (the configuration refuses SANDBOXD_* names).
        environment.extend(self.extra_env.iter().map(|(key, value)| (key.clone(), value.clone())));
        // The manifest's variables and secrets override the operator's.
        environment.extend(request.env.0.iter().map(|(key, value)| (key.clone(), value.clone())));
        #[allow(clippy::disallowed_methods, reason = "the local provider is the control plane's one process starter")]
        let mut command = tokio::process::Command::new(program);
        command
            .args(&arguments)
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
        let jailed = self.jail.is_some();
        tracing::info!(sandbox_id = %request.sandbox_id, pid, jailed, workspace = %workspace.display(), "started a local sandbox");
        let handle = json!({"pid": pid, "workspace": workspace, "log": log_path, "jailed": jailed});
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
            // A jail's processes end with its init; a plain daemon's children are found by
            // their working directory.
            if handle["jailed"] != json!(true) {
                kill_stragglers(Path::new(workspace));
            }
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

    fn shares_host_network(&self, internet_access: bool) -> bool {
        self.jail.is_none() || internet_access
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
