//! Prepared runtimes as overlayfs layers over the jail's root.
//!
//! A layer directory holds one `<name>/upper` (and, while it is built, `<name>/work`) per mount of
//! the root that it layers: `root` (the whole root: the skeleton, or a `--root` directory), and in
//! the skeleton mode each of the host's system directories (`usr`, `etc`, …) and the parts of
//! `/var` that apt and dpkg keep their state in ([`VAR_DIRS`]). Overlays are made mount by mount
//! because an overlay's lower layer shows a directory's own files, never what is mounted on it.
//!
//! - Build mode (`--build-layer DIR`): each of those mounts is a writable overlay whose upper
//!   directory is `DIR/<name>/upper`, so that whatever the program writes anywhere in the root
//!   (apt's packages, a setup script's files) lands in the layer directory and the host's files
//!   stay as they were.
//! - Session mode (`--layer DIR`): each mount whose layer has an upper directory is a read-only
//!   overlay with that upper directory above the host's (or the root directory's) files.
//!
//! Sources are opened before anything is mounted and named through `/proc/self/fd`, as
//! `mounts.rs` does for bind mounts, so that the staging tmpfs cannot hide them.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::mount::{MsFlags, mount};

use super::mounts::{bind, make_dir, open_path, remount};

/// The layered parts of the host's `/var` in the skeleton mode: what apt and dpkg read and write.
/// The rest of `/var` is the root layer's (empty on the host's side).
pub const VAR_DIRS: [&str; 5] = ["var/lib/dpkg", "var/lib/apt", "var/cache/apt", "var/cache/debconf", "var/lib/ucf"];
/// The name of the whole root's layer.
pub const ROOT_LAYER: &str = "root";

/// How the jail uses a layer directory.
#[derive(Clone, Debug)]
pub enum LayerPlan {
    /// Sessions: the layer directory's upper directories, read-only, over the root.
    Read(PathBuf),
    /// A build: the root is writable and what is written lands in the layer directory.
    Build(PathBuf),
}

/// A host directory bound read-only into the jail: `--bind-ro HOST:JAIL`.
#[derive(Clone, Debug)]
pub struct BindRo {
    pub host: PathBuf,
    pub jail: PathBuf,
}

/// The layer directory and the host's `/var` parts, open before any mount.
#[derive(Debug)]
pub struct LayerSources {
    build: bool,
    /// The layer directory.
    dir: OwnedFd,
    dir_path: PathBuf,
    /// `(name, descriptor)` of the host's [`VAR_DIRS`] that exist.
    var_dirs: Vec<(&'static str, OwnedFd)>,
    /// In a user namespace, overlayfs keeps its attributes in `user.*` (`userxattr`).
    in_user_namespace: bool,
}

/// `--bind-ro`'s sources, open before any mount.
#[derive(Debug)]
pub struct BindSources(Vec<(PathBuf, OwnedFd)>);

impl std::str::FromStr for BindRo {
    type Err = String;

    fn from_str(value: &str) -> Result<BindRo, String> {
        let (host, jail) = value.split_once(':').ok_or_else(|| format!("expected HOST:JAIL, got {value:?}"))?;
        let jail = PathBuf::from(jail);
        if !jail.is_absolute() || jail.components().any(|part| matches!(part, std::path::Component::ParentDir)) {
            return Err(format!("the path in the jail must be absolute and without ..: {value:?}"));
        }
        Ok(BindRo { host: PathBuf::from(host), jail })
    }
}

impl LayerSources {
    /// Opens the layer directory (made, with its mounts' directories, in build mode) and, in the
    /// skeleton mode, the host's [`VAR_DIRS`].
    pub fn open(plan: &LayerPlan, skeleton: bool, system_dirs: &[&str]) -> anyhow::Result<LayerSources> {
        let (dir_path, build) = match plan {
            LayerPlan::Read(dir) => (dir.clone(), false),
            LayerPlan::Build(dir) => (dir.clone(), true),
        };
        let var_dirs: Vec<(&'static str, OwnedFd)> = if skeleton {
            VAR_DIRS
                .into_iter()
                .filter(|name| Path::new("/").join(name).is_dir())
                .map(|name| Ok((name, open_path(&Path::new("/").join(name))?)))
                .collect::<anyhow::Result<_>>()?
        } else {
            Vec::new()
        };
        if build {
            let names = std::iter::once(ROOT_LAYER)
                .chain(if skeleton { system_dirs.to_vec() } else { Vec::new() })
                .chain(var_dirs.iter().map(|(name, _)| *name));
            for name in names {
                for part in ["upper", "work"] {
                    make_dir(&dir_path.join(layer_name(name)).join(part))?;
                }
            }
        }
        Ok(LayerSources {
            build,
            dir: open_path(&dir_path).context("the layer directory")?,
            dir_path,
            var_dirs,
            in_user_namespace: in_user_namespace(),
        })
    }

    pub fn is_build(&self) -> bool {
        self.build
    }

    /// Mounts `name`'s overlay on `target` over `lower` (a path the init can reach); without an
    /// upper directory of its own in session mode, binds `lower` as it is, read-only.
    pub fn mount(&self, name: &str, lower: &str, target: &Path) -> anyhow::Result<()> {
        let in_dir = |part: &str| format!("/proc/self/fd/{}/{}/{part}", self.dir.as_raw_fd(), layer_name(name));
        let mut options = if self.build {
            format!("lowerdir={lower},upperdir={},workdir={}", in_dir("upper"), in_dir("work"))
        } else if Path::new(&in_dir("upper")).is_dir() {
            format!("lowerdir={}:{lower}", in_dir("upper"))
        } else {
            let source = open_path(Path::new(lower))?;
            bind(&source, target, true)?;
            return remount(target, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
        };
        if self.in_user_namespace {
            options.push_str(",userxattr");
        }
        let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if !self.build {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(Some("overlay"), target, Some("overlay"), flags, Some(options.as_str()))
            .with_context(|| format!("mount the {name} layer of {} on {}", self.dir_path.display(), target.display()))
    }

    /// Mounts the host's [`VAR_DIRS`] under `new_root`, each layered (skeleton mode).
    pub fn mount_var_dirs(&self, new_root: &Path) -> anyhow::Result<()> {
        for (name, source) in &self.var_dirs {
            let target = new_root.join(name);
            make_dir(&target)?;
            self.mount(name, &fd_path(source), &target)?;
        }
        Ok(())
    }
}

impl BindSources {
    pub fn open(binds: &[BindRo]) -> anyhow::Result<BindSources> {
        let opened = binds
            .iter()
            .map(|bind| Ok((bind.jail.clone(), open_path(&bind.host).context("a --bind-ro directory")?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(BindSources(opened))
    }

    /// Binds each source read-only at its place under `new_root` (made where it is missing, which
    /// needs a writable root: the skeleton's, or a build's).
    pub fn mount(&self, new_root: &Path) -> anyhow::Result<()> {
        for (jail, source) in &self.0 {
            let target = new_root.join(jail.strip_prefix("/").unwrap_or(jail));
            make_dir(&target)?;
            bind(source, &target, true)?;
            remount(&target, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
        }
        Ok(())
    }
}

/// After a build: removes the empty directories that only `--bind-ro`'s mount points left in the
/// root layer, so that sessions do not see them.
pub fn tidy_after_build(layer_dir: &Path, binds: &[BindRo]) {
    let upper = layer_dir.join(ROOT_LAYER).join("upper");
    for bind in binds {
        let mut dir = upper.join(bind.jail.strip_prefix("/").unwrap_or(&bind.jail));
        while dir.starts_with(&upper) && dir != upper && std::fs::remove_dir(&dir).is_ok() {
            dir.pop();
        }
    }
}

/// A descriptor's path for overlayfs options.
pub fn fd_path(source: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", source.as_raw_fd())
}

/// A mount's layer name: its path in the root with `/` as `-` (`var/lib/dpkg` → `var-lib-dpkg`).
fn layer_name(name: &str) -> String {
    name.replace('/', "-")
}

/// True when this process's user namespace is not the host's (its uid map is not the whole range).
fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| !map.split_whitespace().eq(["0", "0", "4294967295"]))
}
