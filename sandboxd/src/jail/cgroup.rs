//! The sandbox's cgroups: memory (without swap), CPU and a pids limit, on whichever cgroup version
//! the host runs. Each sandbox gets `dari-sandboxes/<sandbox id>` under the launcher's own cgroup
//! of each controller (v1: `memory`, `pids`, `cpu`; v2: the one unified directory, whose parent
//! must delegate the controllers to it).
//!
//! The memory controller's event counter (`memory.oom_control` on v1, `memory.events` on v2; both
//! have an `oom_kill N` line) is bound read-only into the jail, so that sandboxd can tell an
//! out-of-memory kill from any other SIGKILL.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;

/// The counter inside the jail.
pub const MEMORY_EVENTS_IN_JAIL: &str = "/run/dari/memory.events";

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const PARENT: &str = "dari-sandboxes";
/// A sibling's directory left by a launcher that was killed is removed by a later launcher once it
/// is this old and empty (a younger one may be a launcher's that has not joined it yet).
const STALE_AFTER: Duration = Duration::from_secs(60);
/// The CFS period the CPU quota is a multiple of.
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Clone, Copy, Debug)]
pub struct CgroupLimits {
    pub memory_mb: Option<u64>,
    pub cpus: Option<u32>,
    pub pids_max: u64,
}

/// The sandbox's cgroup directories, one per hierarchy it uses.
#[derive(Debug)]
pub struct Cgroups {
    /// Each directory with the cgroup the launcher was in before joining it.
    dirs: Vec<(PathBuf, PathBuf)>,
    memory_events: PathBuf,
}

impl Cgroups {
    /// Makes the cgroups and writes the limits; nothing is left behind when it fails.
    pub fn create(sandbox_id: &str, limits: &CgroupLimits) -> anyhow::Result<Cgroups> {
        let own = std::fs::read_to_string("/proc/self/cgroup").context("read /proc/self/cgroup")?;
        let mut cgroups = Cgroups { dirs: Vec::new(), memory_events: PathBuf::new() };
        let created = if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
            cgroups.create_v2(&own, sandbox_id, limits)
        } else {
            cgroups.create_v1(&own, sandbox_id, limits)
        };
        match created {
            Ok(()) => Ok(cgroups),
            Err(error) => {
                cgroups.remove();
                Err(error)
            }
        }
    }

    fn create_v1(&mut self, own: &str, sandbox_id: &str, limits: &CgroupLimits) -> anyhow::Result<()> {
        let memory = self.make_v1(own, "memory", sandbox_id)?;
        if let Some(memory_mb) = limits.memory_mb {
            let bytes = memory_mb.saturating_mul(1024 * 1024).to_string();
            write(&memory.join("memory.limit_in_bytes"), &bytes)?;
            // Without swap accounting the file is absent, and swappiness 0 keeps the sandbox's
            // pages in memory so that the limit ends in a kill, not in thrashing.
            let with_swap = memory.join("memory.memsw.limit_in_bytes");
            if with_swap.exists() {
                write(&with_swap, &bytes)?;
            }
            let _ = std::fs::write(memory.join("memory.swappiness"), "0");
        }
        self.memory_events = memory.join("memory.oom_control");
        let pids = self.make_v1(own, "pids", sandbox_id)?;
        write(&pids.join("pids.max"), &limits.pids_max.to_string())?;
        if let Some(cpus) = limits.cpus {
            let cpu = self.make_v1(own, "cpu", sandbox_id)?;
            write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            write(&cpu.join("cpu.cfs_quota_us"), &(CPU_PERIOD_US * u64::from(cpus)).to_string())?;
        }
        Ok(())
    }

    /// Makes the sandbox's directory in the v1 hierarchy of `controller`.
    fn make_v1(&mut self, own: &str, controller: &str, sandbox_id: &str) -> anyhow::Result<PathBuf> {
        let (hierarchy, path) = own
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                controllers.split(',').any(|name| name == controller).then_some((controllers, path))
            })
            .next()
            .with_context(|| format!("this host has no {controller} cgroup controller"))?;
        let current = Path::new(CGROUP_ROOT).join(hierarchy).join(path.trim_start_matches('/'));
        self.make(current, sandbox_id)
    }

    fn create_v2(&mut self, own: &str, sandbox_id: &str, limits: &CgroupLimits) -> anyhow::Result<()> {
        let path = own
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .context("/proc/self/cgroup has no cgroup v2 entry")?;
        let own = Path::new(CGROUP_ROOT).join(path.trim_start_matches('/'));
        let enable = "+memory +pids +cpu";
        // The kernel lets no cgroup with processes of its own (but the root) delegate controllers:
        // the server's own cgroup works when it is the root or holds no process, else its parent
        // does when the server runs in a leaf of a delegated cgroup (systemd's Delegate=yes).
        let current = match std::fs::write(own.join("cgroup.subtree_control"), enable) {
            Ok(()) => own,
            Err(error) => {
                let parent = own.parent().filter(|parent| parent.starts_with(CGROUP_ROOT) && *parent != own);
                match parent.map(|parent| (parent, std::fs::write(parent.join("cgroup.subtree_control"), enable))) {
                    Some((parent, Ok(()))) => parent.to_path_buf(),
                    _ => {
                        return Err(error).with_context(|| {
                            format!(
                                "enable the memory, pids and cpu controllers for the children of {} or its parent \
                                 (cgroup v2 lets a cgroup with processes of its own delegate none: run the control \
                                 plane in a leaf of a delegated cgroup, e.g. systemd's Delegate=yes)",
                                own.display()
                            )
                        });
                    }
                }
            }
        };
        let dir = self.make(current, sandbox_id)?;
        let parent = dir.parent().context("the sandbox cgroup's parent")?;
        write(&parent.join("cgroup.subtree_control"), enable)?;
        if let Some(memory_mb) = limits.memory_mb {
            write(&dir.join("memory.max"), &memory_mb.saturating_mul(1024 * 1024).to_string())?;
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        }
        write(&dir.join("pids.max"), &limits.pids_max.to_string())?;
        if let Some(cpus) = limits.cpus {
            write(&dir.join("cpu.max"), &format!("{} {CPU_PERIOD_US}", CPU_PERIOD_US * u64::from(cpus)))?;
        }
        self.memory_events = dir.join("memory.events");
        Ok(())
    }

    /// Makes `<current>/dari-sandboxes/<sandbox id>`, sweeping stale siblings first.
    fn make(&mut self, current: PathBuf, sandbox_id: &str) -> anyhow::Result<PathBuf> {
        let parent = current.join(PARENT);
        std::fs::create_dir_all(&parent).with_context(|| format!("create the cgroup {}", parent.display()))?;
        sweep_stale(&parent);
        let dir = parent.join(sandbox_id);
        // One left by a launcher of the same sandbox that was killed goes first (when empty).
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).with_context(|| format!("create the cgroup {}", dir.display()))?;
        self.dirs.push((dir.clone(), current));
        Ok(dir)
    }

    /// Moves the calling process into every directory; its children start there.
    pub fn join_self(&self) -> anyhow::Result<()> {
        let pid = std::process::id().to_string();
        self.dirs.iter().try_for_each(|(dir, _)| write(&dir.join("cgroup.procs"), &pid))
    }

    /// The memory controller's event counter on the host.
    pub fn memory_events(&self) -> &Path {
        &self.memory_events
    }

    /// Moves the calling process back where it was and removes the directories (all processes of
    /// the jail have ended with its init).
    pub fn remove(self) {
        let pid = std::process::id().to_string();
        for (dir, previous) in &self.dirs {
            let _ = std::fs::write(previous.join("cgroup.procs"), &pid);
            if let Err(error) = std::fs::remove_dir(dir) {
                eprintln!("warning: remove the cgroup {}: {error}", dir.display());
            }
        }
    }
}

/// Removes the empty directories of sandboxes whose launchers were killed (a directory with
/// processes refuses removal).
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .is_ok_and(|modified| now.duration_since(modified).is_ok_and(|age| age > STALE_AFTER));
        if old && entry.path().is_dir() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

fn write(path: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value).with_context(|| format!("write {value:?} to {}", path.display()))
}
