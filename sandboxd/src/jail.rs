//! The local jail: `sandboxd jail` puts a program (by default this sandboxd's `run`) into new
//! Linux namespaces with a read-only root, a private `/workspace` and `/tmp`, a minimal `/dev`, its
//! own `/proc`, cgroup limits and, unless it may reach the internet, a network of loopback only.
//!
//! Three processes, each single-threaded while it changes namespaces (the kernel refuses a mount
//! namespace to a process whose file system state other threads share):
//! 1. the launcher (`sandboxd jail`, on the host): makes the sandbox's cgroups and joins them, enters
//!    a user namespace when it is not root, makes a pid namespace for its children and starts the
//!    init; it forwards SIGTERM and SIGINT, and when the init ends it removes the cgroups and exits
//!    with the init's status;
//! 2. the init (`sandboxd jail-init`, pid 1 of the new pid namespace): makes the mount, UTS, IPC and
//!    network namespaces, brings loopback up, builds the root and pivots into it, drops privileges
//!    and starts the program; then it reaps every orphan of the namespace and forwards signals, and
//!    exits with the program's status, which ends every process left in the namespace;
//! 3. the program, as pid 2, with only [`privileges::KEPT`] capabilities and `no_new_privs`.
//!
//! A prepared runtime (`layers.rs`) is laid read-only over the root with `--layer`; `--build-layer`
//! builds one: the root is then writable, and what the program writes lands in the layer directory.
//!
//! No `unsafe`: namespaces, mounts and signals go through `nix`'s safe wrappers and capabilities
//! through `caps`; children are started with `std::process::Command`, which resets the signal mask
//! that the supervisors block.

mod cgroup;
mod etc;
mod layers;
mod loopback;
mod mounts;
mod privileges;
mod supervise;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{Gid, Uid};

pub use cgroup::{CgroupLimits, MEMORY_EVENTS_IN_JAIL};
pub use layers::BindRo;

/// Where the jail's own files are: this sandboxd, the link's socket directory and the memory
/// events counter, read-only.
pub const RUN_DIR: &str = "/run/dari";
/// The sandboxd binary inside the jail.
pub const SANDBOXD_IN_JAIL: &str = "/run/dari/sandboxd";
/// The control plane's link directory inside the jail (`--link-dir`).
pub const LINK_DIR_IN_JAIL: &str = "/run/dari/link";
/// The sandbox's workspace inside the jail.
pub const WORKSPACE_IN_JAIL: &str = "/workspace";

/// How to build a jail: the flags of `sandboxd jail`, which the local provider gives.
#[derive(Clone, Debug, clap::Args)]
pub struct JailSpec {
    /// The sandbox's id: the jail's hostname and the name of its cgroups.
    #[arg(long)]
    pub sandbox_id: String,
    /// The host directory that becomes `/workspace`, read-write.
    #[arg(long)]
    pub workspace: PathBuf,
    /// A root file system directory (see images/rootfs.sh) to use read-only as `/`; default: the
    /// host's system directories (`/usr`, `/etc` without its secrets, …), read-only.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// A host directory bound read-only at /run/dari/link: where the control plane's link socket is.
    #[arg(long)]
    pub link_dir: Option<PathBuf>,
    /// Share the host's network (internet access); default: a network namespace with loopback only.
    #[arg(long)]
    pub host_network: bool,
    /// The memory limit, in MiB; reaching it gets the largest process killed.
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// The CPU limit, in whole CPUs.
    #[arg(long)]
    pub cpus: Option<u32>,
    /// The most processes (and threads) alive in the sandbox at once.
    #[arg(long, default_value_t = 1024)]
    pub pids_max: u64,
    /// The size of the jail's `/tmp` (and `/dev/shm`), in MiB; both count against the memory limit.
    #[arg(long, default_value_t = 512)]
    pub tmp_mb: u64,
    /// The memory cgroup's event counter, which the launcher gives the init; never by hand.
    #[arg(long, hide = true)]
    pub memory_events: Option<PathBuf>,
    /// A prepared runtime: a layer directory (built with `--build-layer`) laid read-only over the
    /// root.
    #[arg(long, conflicts_with = "build_layer")]
    pub layer: Option<PathBuf>,
    /// Build a prepared runtime: the root is writable and what the program writes lands in this
    /// layer directory (made if missing); the host's files stay as they are.
    #[arg(long)]
    pub build_layer: Option<PathBuf>,
    /// `HOST:JAIL`: a host directory bound read-only into the jail (a build's `/bundle`).
    #[arg(long)]
    pub bind_ro: Vec<BindRo>,
    /// The program to run in the jail, after `--`; default: `/run/dari/sandboxd run`.
    #[arg(last = true)]
    pub command: Vec<OsString>,
}

impl JailSpec {
    fn layers(&self) -> Option<layers::LayerPlan> {
        match (&self.layer, &self.build_layer) {
            (_, Some(dir)) => Some(layers::LayerPlan::Build(dir.clone())),
            (Some(dir), None) => Some(layers::LayerPlan::Read(dir.clone())),
            (None, None) => None,
        }
    }

    fn limits(&self) -> CgroupLimits {
        CgroupLimits { memory_mb: self.memory_mb, cpus: self.cpus, pids_max: self.pids_max }
    }

    /// The program the init starts.
    fn program(&self) -> Vec<OsString> {
        if self.command.is_empty() { vec![SANDBOXD_IN_JAIL.into(), "run".into()] } else { self.command.clone() }
    }
}

/// `sandboxd jail`: the launcher. Exit codes: the program's, 128 + a signal that ended it, or 2
/// when the jail could not be built (the reason on stderr).
pub fn launch(spec: &JailSpec, args: Vec<OsString>) -> ExitCode {
    match launch_inner(spec, args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: sandboxd jail: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn launch_inner(spec: &JailSpec, args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !spec.sandbox_id.is_empty()
            && spec.sandbox_id.len() <= 64
            && spec.sandbox_id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'),
        "--sandbox-id {:?}: use 1 to 64 letters, digits, _ and -",
        spec.sandbox_id
    );
    anyhow::ensure!(spec.memory_events.is_none(), "--memory-events is the launcher's to give, not a caller's");
    let root = Uid::effective().is_root();
    let cgroups = if root {
        Some(cgroup::Cgroups::create(&spec.sandbox_id, &spec.limits()).context("set up the sandbox's cgroups")?)
    } else {
        if spec.memory_mb.is_some() || spec.cpus.is_some() {
            eprintln!("warning: sandboxd jail: not root, so no cgroups: memory, cpu and pids limits are not enforced");
        }
        None
    };
    if let Some(cgroups) = &cgroups {
        cgroups.join_self().context("join the sandbox's cgroups")?;
    }
    let entered = enter_pid_namespace(root);
    let status = entered.and_then(|()| {
        let exe = std::env::current_exe().context("find this sandboxd binary")?;
        let mut command = command(exe);
        command.arg("jail-init");
        if let Some(cgroups) = &cgroups {
            command.arg("--memory-events").arg(cgroups.memory_events());
        }
        command.args(args);
        supervise::run(command).context("start the jail's init")
    });
    if let Some(cgroups) = cgroups {
        cgroups.remove();
    }
    if let Some(layer_dir) = &spec.build_layer {
        layers::tidy_after_build(layer_dir, &spec.bind_ro);
    }
    status
}

/// Makes the pid namespace the init will be the first process of; without root, inside a new user
/// namespace in which this user is root (and nobody else exists).
fn enter_pid_namespace(root: bool) -> anyhow::Result<()> {
    if root {
        return unshare(CloneFlags::CLONE_NEWPID).context("make a pid namespace (unshare CLONE_NEWPID)");
    }
    let (uid, gid) = (Uid::effective(), Gid::effective());
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID).context(
        "make a user and pid namespace as an unprivileged user (unprivileged user namespaces may be disabled: \
         kernel.unprivileged_userns_clone, or AppArmor's restrict_unprivileged_userns; run as root, or with \
         --sandbox-isolation none)",
    )?;
    std::fs::write("/proc/self/setgroups", "deny").context("write /proc/self/setgroups")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).context("write /proc/self/uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).context("write /proc/self/gid_map")?;
    Ok(())
}

/// `sandboxd jail-init`: pid 1 of the jail. Builds it, starts the program and supervises it.
pub fn init(spec: &JailSpec) -> ExitCode {
    match init_inner(spec) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: sandboxd jail: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_inner(spec: &JailSpec) -> anyhow::Result<ExitCode> {
    // A launcher killed outright takes the jail with it.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).context("set the parent-death signal")?;
    // Nothing in the jail may trace the init or read its memory, environment or executable
    // (`/proc/1/exe` is the host's binary).
    nix::sys::prctl::set_dumpable(false).context("make the init non-dumpable")?;
    // A session of its own: no process of the jail has the host's terminal, so none can push
    // input into it (TIOCSTI).
    nix::unistd::setsid().context("start a session")?;
    let mut namespaces = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if !spec.host_network {
        namespaces |= CloneFlags::CLONE_NEWNET;
    }
    unshare(namespaces).context("make the mount, UTS, IPC and network namespaces")?;
    if !spec.host_network {
        loopback::bring_up().context("bring up the loopback interface")?;
    }
    nix::unistd::sethostname(&spec.sandbox_id).context("set the hostname")?;
    let memory_events = spec.memory_events.clone();
    let plan = mounts::Plan {
        root: spec.root.clone(),
        workspace: spec.workspace.clone(),
        link_dir: spec.link_dir.clone(),
        sandboxd: std::env::current_exe().context("find this sandboxd binary")?,
        memory_events: memory_events.clone(),
        host_network: spec.host_network,
        tmp_mb: spec.tmp_mb,
        layers: spec.layers(),
        binds: spec.bind_ro.clone(),
    };
    mounts::build_and_enter(&plan).context("build the jail's file system")?;
    privileges::restrict_children(spec.build_layer.is_some()).context("drop privileges")?;

    let program = spec.program();
    let mut command = command(&program[0]);
    command.args(&program[1..]).current_dir(WORKSPACE_IN_JAIL);
    if memory_events.is_some() {
        command.env(crate::config::ENV_MEMORY_EVENTS, MEMORY_EVENTS_IN_JAIL);
    }
    if let Some(memory_mb) = spec.memory_mb {
        command.env(crate::config::ENV_MEMORY_LIMIT_MB, memory_mb.to_string());
    }
    supervise::run_as_init(command, privileges::drop_own)
}

/// The jail's process starter: the init, and in it the program. The environment is the launcher's,
/// passed on whole; std gives each child an empty signal mask.
#[allow(clippy::disallowed_methods, reason = "the jail's two children start here, before any runtime")]
fn command(program: impl AsRef<OsStr>) -> std::process::Command {
    std::process::Command::new(program)
}
