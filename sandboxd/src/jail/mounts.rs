//! The jail's file system, built in the init's new mount namespace and then made its root.
//!
//! The root is read-only: a root file system directory (`--root`), or a skeleton on a tmpfs with
//! the host's system directories (`/usr`, and `/bin`, `/lib`… as the host has them) bound
//! read-only, and an `/etc` of the host's entries that programs need to run (users, names,
//! libraries, certificates), never a service's configuration. Either way `/etc`'s secrets are
//! hidden. On it: the workspace read-write at `/workspace`, a
//! private tmpfs at `/tmp` and `/dev/shm`, a `/dev` of the harmless devices with its own `devpts`,
//! a `/proc` of the jail's pid namespace with `/proc/sys` read-only and the kernel's sensitive
//! files hidden, and `/run/dari` (this sandboxd, the link's socket directory, the memory events
//! counter). Nothing else of the host is reachable: no `/sys`, no home directories, no data
//! directory of the control plane.
//!
//! Every source is opened (`O_PATH`) before anything is mounted and bound from its descriptor,
//! so that the staging tmpfs, which hides the host's `/tmp`, cannot hide a source that lives there.
//! Bind mounts keep the flags that the kernel locks in a user namespace (`nosuid`, `noexec`…).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, statvfs};

use super::etc;
use super::layers::{BindRo, BindSources, LayerPlan, LayerSources, ROOT_LAYER, VAR_DIRS, fd_path};
use super::{LINK_DIR_IN_JAIL, RUN_DIR, SANDBOXD_IN_JAIL, WORKSPACE_IN_JAIL};
use crate::jail::cgroup::MEMORY_EVENTS_IN_JAIL;

/// Where the new root is put together, in the init's own mount namespace only.
const STAGING: &str = "/tmp";
/// The host's system directories a skeleton root gets (symlinks, as `/bin` → `usr/bin`, are
/// copied as symlinks). `/etc` is a copy of what `etc.rs` allows.
const SYSTEM_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Devices bound from the host's `/dev` (not `tty`: the jail has no controlling terminal).
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];
/// Under `/proc`: what reads the kernel's memory or acts on the host (Docker's masked paths).
const PROC_MASKED: [&str; 13] = [
    "kcore",
    "sysrq-trigger",
    "keys",
    "timer_list",
    "latency_stats",
    "sched_debug",
    "acpi",
    "scsi",
    "kmsg",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "asound",
];
/// Under `/proc`: what root could change for the whole host through, made read-only.
const PROC_READ_ONLY: [&str; 4] = ["sys", "irq", "bus", "fs"];

/// What goes into the jail.
#[derive(Debug)]
pub struct Plan {
    pub root: Option<PathBuf>,
    pub workspace: PathBuf,
    pub link_dir: Option<PathBuf>,
    pub sandboxd: PathBuf,
    pub memory_events: Option<PathBuf>,
    pub host_network: bool,
    pub tmp_mb: u64,
    /// A prepared runtime over the root, or a build of one (`layers.rs`).
    pub layers: Option<LayerPlan>,
    pub binds: Vec<BindRo>,
}

/// The host files a jail is built from, open before any mount.
struct Sources {
    workspace: OwnedFd,
    root: Option<OwnedFd>,
    link_dir: Option<OwnedFd>,
    sandboxd: OwnedFd,
    memory_events: Option<OwnedFd>,
    resolv_conf: Option<OwnedFd>,
    /// `(name, descriptor)` of the host's system directories that are directories.
    system_dirs: Vec<(&'static str, OwnedFd)>,
    /// `(name, target)` of those that are symlinks.
    system_links: Vec<(&'static str, PathBuf)>,
    devices: Vec<(&'static str, OwnedFd)>,
    null: OwnedFd,
    layers: Option<LayerSources>,
    binds: BindSources,
}

/// Builds the jail's file system and makes it the root; the working directory is `/workspace`.
pub fn build_and_enter(plan: &Plan) -> anyhow::Result<()> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("make the mount namespace private")?;
    let sources = Sources::open(plan)?;
    mount_tmpfs(Path::new(STAGING), "mode=0755,size=64m", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    let new_root = match &sources.root {
        Some(root) => {
            let new_root = Path::new(STAGING).join("root");
            make_dir(&new_root)?;
            match &sources.layers {
                Some(layers) => layers.mount(ROOT_LAYER, &fd_path(root), &new_root)?,
                None => bind(root, &new_root, true)?,
            }
            for required in ["workspace", "tmp", "dev", "proc", "run/dari"] {
                anyhow::ensure!(
                    new_root.join(required).is_dir(),
                    "the root file system {} has no /{required}; build it with images/rootfs.sh",
                    plan.root.as_deref().unwrap_or(Path::new("")).display()
                );
            }
            for secret in etc::SECRETS {
                hide(&new_root.join("etc").join(secret), &sources.null)?;
            }
            new_root
        }
        None => build_skeleton(Path::new(STAGING), &sources)?,
    };
    let workspace = new_root.join(WORKSPACE_IN_JAIL.trim_start_matches('/'));
    bind(&sources.workspace, &workspace, false)?;
    remount(&workspace, MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    let tmp_size = format!("mode=1777,size={}m", plan.tmp_mb.max(1));
    mount_tmpfs(&new_root.join("tmp"), &tmp_size, MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    build_dev(&new_root.join("dev"), &sources, &tmp_size)?;
    build_run_dir(&new_root.join(RUN_DIR.trim_start_matches('/')), &sources)?;
    if plan.host_network
        && plan.root.is_some()
        && let Some(resolv_conf) = &sources.resolv_conf
        && new_root.join("etc/resolv.conf").is_file()
    {
        bind(resolv_conf, &new_root.join("etc/resolv.conf"), false)?;
        remount(&new_root.join("etc/resolv.conf"), MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    }
    sources.binds.mount(&new_root)?;
    mount_proc(&new_root.join("proc"), &sources.null)?;
    // A build's root stays writable: what it writes lands in the layer directory.
    if !sources.layers.as_ref().is_some_and(LayerSources::is_build) {
        remount(&new_root, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    }
    enter(&new_root)
}

impl Sources {
    fn open(plan: &Plan) -> anyhow::Result<Sources> {
        let mut system_dirs = Vec::new();
        let mut system_links = Vec::new();
        if plan.root.is_none() {
            for name in SYSTEM_DIRS {
                let host = Path::new("/").join(name);
                match std::fs::symlink_metadata(&host) {
                    Ok(metadata) if metadata.file_type().is_symlink() => {
                        let target = std::fs::read_link(&host).with_context(|| format!("read {}", host.display()))?;
                        system_links.push((name, target));
                    }
                    Ok(metadata) if metadata.is_dir() => system_dirs.push((name, open_path(&host)?)),
                    _ => {}
                }
            }
        }
        let devices = DEVICES
            .into_iter()
            .filter(|name| Path::new("/dev").join(name).exists())
            .map(|name| Ok((name, open_path(&Path::new("/dev").join(name))?)))
            .collect::<anyhow::Result<_>>()?;
        let resolv_conf = Path::new("/etc/resolv.conf");
        let names: Vec<&str> = system_dirs.iter().map(|(name, _)| *name).collect();
        Ok(Sources {
            workspace: open_path(&plan.workspace).context("the workspace")?,
            root: plan.root.as_deref().map(open_path).transpose().context("the root file system")?,
            link_dir: plan.link_dir.as_deref().map(open_path).transpose().context("the link directory")?,
            sandboxd: open_path(&plan.sandboxd)?,
            memory_events: plan.memory_events.as_deref().map(open_path).transpose()?,
            resolv_conf: resolv_conf.exists().then(|| open_path(resolv_conf)).transpose()?,
            system_dirs,
            system_links,
            devices,
            null: open_path(Path::new("/dev/null"))?,
            layers: plan
                .layers
                .as_ref()
                .map(|layers| LayerSources::open(layers, plan.root.is_none(), &names))
                .transpose()?,
            binds: BindSources::open(&plan.binds)?,
        })
    }
}

/// The root made of the host's system directories, read-only, and the allowed part of `/etc`;
/// with a layer directory, the skeleton is built beside the root and every part of it is layered.
fn build_skeleton(staging: &Path, sources: &Sources) -> anyhow::Result<PathBuf> {
    let skeleton = if sources.layers.is_some() { staging.join("skeleton") } else { staging.to_owned() };
    make_dir(&skeleton)?;
    etc::copy_allowed(Path::new("/etc"), &skeleton.join("etc"))?;
    for (name, target) in &sources.system_links {
        symlink(target, skeleton.join(name)).with_context(|| format!("link /{name}"))?;
    }
    let var_dirs = if sources.layers.is_some() { &VAR_DIRS[..] } else { &[] };
    let system_dirs = sources.system_dirs.iter().map(|(name, _)| *name);
    for dir in ["workspace", "tmp", "dev", "proc", "run/dari", "var"]
        .into_iter()
        .chain(system_dirs)
        .chain(var_dirs.iter().copied())
    {
        make_dir(&skeleton.join(dir))?;
    }
    symlink("../tmp", skeleton.join("var/tmp")).context("link /var/tmp")?;
    let new_root = match &sources.layers {
        Some(layers) => {
            let new_root = staging.join("root");
            make_dir(&new_root)?;
            layers.mount(ROOT_LAYER, &skeleton.to_string_lossy(), &new_root)?;
            new_root
        }
        None => skeleton,
    };
    for (name, source) in &sources.system_dirs {
        let target = new_root.join(name);
        match &sources.layers {
            Some(layers) => layers.mount(name, &fd_path(source), &target)?,
            None => {
                bind(source, &target, true)?;
                remount(&target, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
            }
        }
    }
    if let Some(layers) = &sources.layers {
        layers.mount_var_dirs(&new_root)?;
    }
    Ok(new_root)
}

/// `/dev`: a small tmpfs with the harmless devices bound in, its own `devpts` and `/dev/shm`.
fn build_dev(dev: &Path, sources: &Sources, shm_size: &str) -> anyhow::Result<()> {
    mount_tmpfs(dev, "mode=0755,size=64k", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC)?;
    for (name, source) in &sources.devices {
        let target = dev.join(name);
        make_file(&target)?;
        bind(source, &target, false)?;
    }
    let pts = dev.join("pts");
    make_dir(&pts)?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .context("mount /dev/pts")?;
    symlink("pts/ptmx", dev.join("ptmx")).context("link /dev/ptmx")?;
    let shm = dev.join("shm");
    make_dir(&shm)?;
    mount_tmpfs(&shm, shm_size, MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).with_context(|| format!("link /dev/{name}"))?;
    }
    remount_tmpfs(dev, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, "mode=0755,size=64k")
}

/// `/run/dari`: this sandboxd, the link's directory and the memory events counter, read-only.
fn build_run_dir(run_dir: &Path, sources: &Sources) -> anyhow::Result<()> {
    mount_tmpfs(run_dir, "mode=0755,size=16k", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    let in_run_dir = |path: &str| run_dir.join(Path::new(path).strip_prefix(RUN_DIR).unwrap_or(Path::new(path)));
    let sandboxd = in_run_dir(SANDBOXD_IN_JAIL);
    make_file(&sandboxd)?;
    bind(&sources.sandboxd, &sandboxd, false)?;
    remount(&sandboxd, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    if let Some(link_dir) = &sources.link_dir {
        let target = in_run_dir(LINK_DIR_IN_JAIL);
        make_dir(&target)?;
        bind(link_dir, &target, false)?;
        remount(&target, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)?;
    }
    if let Some(memory_events) = &sources.memory_events {
        let target = in_run_dir(MEMORY_EVENTS_IN_JAIL);
        make_file(&target)?;
        bind(memory_events, &target, false)?;
        remount(&target, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)?;
    }
    remount_tmpfs(run_dir, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV, "mode=0755,size=16k")
}

/// The jail's `/proc`: its own pid namespace's, with `/proc/sys`, `/proc/irq`, `/proc/bus` and
/// `/proc/fs` read-only and the kernel's sensitive files hidden.
fn mount_proc(proc: &Path, null: &OwnedFd) -> anyhow::Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), proc, Some("proc"), flags, None::<&str>).context("mount /proc")?;
    for read_only in PROC_READ_ONLY {
        let dir = proc.join(read_only);
        if dir.is_dir() {
            bind(&open_path(&dir)?, &dir, true)?;
            remount(&dir, MsFlags::MS_RDONLY | flags)?;
        }
    }
    for masked in PROC_MASKED {
        hide(&proc.join(masked), null)?;
    }
    Ok(())
}

/// Pivots into `new_root` and lets go of the host's root.
fn enter(new_root: &Path) -> anyhow::Result<()> {
    std::env::set_current_dir(new_root).context("enter the new root")?;
    nix::unistd::pivot_root(".", ".").context("pivot_root into the new root")?;
    umount2(".", MntFlags::MNT_DETACH).context("detach the host's root")?;
    std::env::set_current_dir(WORKSPACE_IN_JAIL).context("enter /workspace")?;
    Ok(())
}

/// Hides `target`: a file behind `/dev/null`, a directory behind an empty read-only tmpfs.
fn hide(target: &Path, null: &OwnedFd) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(metadata) if metadata.is_dir() => {
            mount_tmpfs(target, "mode=0000,size=4k", MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
        }
        Ok(metadata) if metadata.is_file() => bind(null, target, false),
        _ => Ok(()),
    }
}

pub(super) fn open_path(path: &Path) -> anyhow::Result<OwnedFd> {
    open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).with_context(|| format!("open {}", path.display()))
}

/// Binds what `source` names onto `target`, through the descriptor.
pub(super) fn bind(source: &OwnedFd, target: &Path, recursive: bool) -> anyhow::Result<()> {
    let from = format!("/proc/self/fd/{}", source.as_raw_fd());
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(from.as_str()), target, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("bind onto {}", target.display()))
}

/// Sets a bind mount's flags, keeping those the kernel locks (a user namespace may not clear
/// `nosuid`, `noexec` or the atime flags of a mount it did not make).
pub(super) fn remount(target: &Path, flags: MsFlags) -> anyhow::Result<()> {
    let existing = statvfs(target).with_context(|| format!("statvfs {}", target.display()))?.flags();
    let mut flags = flags | MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    for (fs_flag, ms_flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if existing.contains(fs_flag) {
            flags |= ms_flag;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("remount {}", target.display()))
}

fn mount_tmpfs(target: &Path, options: &str, flags: MsFlags) -> anyhow::Result<()> {
    mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(options))
        .with_context(|| format!("mount a tmpfs on {}", target.display()))
}

fn remount_tmpfs(target: &Path, flags: MsFlags, options: &str) -> anyhow::Result<()> {
    mount(None::<&str>, target, None::<&str>, flags | MsFlags::MS_REMOUNT, Some(options))
        .with_context(|| format!("remount {}", target.display()))
}

pub(super) fn make_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))
}

fn make_file(path: &Path) -> anyhow::Result<()> {
    std::fs::File::create(path).map(drop).with_context(|| format!("create {}", path.display()))
}
