//! The daemon as a process: how big its stripped binary is, how long it takes from exec to its
//! hello on control, and how much memory it holds when idle.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dari_protocol::link::ControlFrame;

use super::control::{BenchControl, BenchLink};
use super::{BuildDirs, Samples, command};
use crate::binaries::{SANDBOXD_PROFILE, build_static_sandboxd};
use crate::fake_control::{SANDBOX_ID, TOKEN};

/// How long the daemon sits connected before its idle memory is read.
pub const IDLE_BEFORE_RSS: Duration = Duration::from_secs(1);

/// The size of the static `sandboxd` binary.
#[derive(Debug)]
pub struct BinarySize {
    pub bytes: u64,
    /// Whether the binary was already stripped (the release profile strips symbols), or a copy
    /// had to be stripped to measure it.
    pub already_stripped: bool,
}

/// Resident memory of a process, from `/proc/<pid>/status`, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Rss {
    pub total: u64,
    pub anon: u64,
    pub file: u64,
}

/// CPU time and context switches of all of a process's threads so far, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    pub cpu: Duration,
    pub switches: u64,
}

/// Exec-to-hello timings of the daemon, its own exec-to-exit reference, and its idle memory.
#[derive(Debug)]
pub struct Startup {
    /// From spawning `sandboxd run` to its hello read by control.
    pub exec_to_hello: Samples,
    /// From spawning `sandboxd --version` to its exit: the part of a start that is not the link.
    pub exec_to_exit: Samples,
    pub idle_rss: Rss,
}

/// Builds the static `sandboxd` as it ships, in the `sandboxd` profile, whatever profile this
/// benchmark was built in, and returns its path.
pub fn build(dirs: &BuildDirs) -> anyhow::Result<PathBuf> {
    build_static_sandboxd(&dirs.target_dir, SANDBOXD_PROFILE)
}

/// Starts `sandboxd run` against `control_url`, with the default logging and pings.
pub fn spawn(sandboxd: &Path, control_url: &str, workspace: &Path) -> anyhow::Result<tokio::process::Child> {
    command(sandboxd)
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SANDBOXD_CONTROL_URL", control_url)
        .env("SANDBOXD_SANDBOX_ID", SANDBOX_ID)
        .env("SANDBOXD_TOKEN", TOKEN)
        .env("SANDBOXD_WORKSPACE", workspace)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start sandboxd run")
}

/// Measures the stripped size of the binary, stripping a copy unless `file` says it is stripped.
pub async fn binary_size(path: &Path) -> anyhow::Result<BinarySize> {
    let description = command("file").arg(path).output().await.map(|output| output.stdout).unwrap_or_default();
    let description = String::from_utf8_lossy(&description);
    if description.contains(", stripped") {
        let bytes = std::fs::metadata(path).context("stat sandboxd")?.len();
        return Ok(BinarySize { bytes, already_stripped: true });
    }
    let copy_dir = tempfile::tempdir().context("create a directory for the stripped copy")?;
    let copy: PathBuf = copy_dir.path().join("sandboxd");
    std::fs::copy(path, &copy).context("copy sandboxd")?;
    let status = command("strip").arg(&copy).status().await.context("run strip")?;
    if !status.success() {
        bail!("strip {} failed with {status}", copy.display());
    }
    let bytes = std::fs::metadata(&copy).context("stat the stripped copy")?.len();
    Ok(BinarySize { bytes, already_stripped: false })
}

/// Starts the daemon `runs` times (after one start that is not counted) and times each start
/// until its hello arrives; then measures the memory of the last one after it idled.
pub async fn startup(
    sandboxd: &Path,
    control: &mut BenchControl,
    workspace: &Path,
    runs: usize,
) -> anyhow::Result<Startup> {
    let mut exec_to_hello = Samples::default();
    let mut exec_to_exit = Samples::default();
    let mut idle_rss = None;
    for run_idx in 0..=runs {
        let started = Instant::now();
        let mut daemon = spawn(sandboxd, &control.url, workspace)?;
        let mut link = control.accept().await?;
        let elapsed = started.elapsed();
        link.welcome().await?;
        if run_idx > 0 {
            exec_to_hello.push(elapsed);
            exec_to_exit.push(time_version_exec(sandboxd).await?);
        }
        if run_idx == runs {
            tokio::time::sleep(IDLE_BEFORE_RSS).await;
            idle_rss = Some(Rss::of(daemon.id().context("the daemon is running")?)?);
        }
        stop(&mut daemon, link).await?;
    }
    let idle_rss = idle_rss.context("at least one start was measured")?;
    Ok(Startup { exec_to_hello, exec_to_exit, idle_rss })
}

/// Asks the daemon to shut down over its link and waits for it to exit. Every result must have
/// been acknowledged: with an empty outbox the daemon exits at once.
pub async fn stop(daemon: &mut tokio::process::Child, mut link: BenchLink) -> anyhow::Result<()> {
    link.send(&ControlFrame::Shutdown { grace_ms: 1_000 }).await?;
    let exited = tokio::time::timeout(Duration::from_secs(10), daemon.wait()).await;
    drop(link);
    match exited {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => bail!("the daemon exited with {status} after a shutdown request"),
        Ok(Err(error)) => Err(error).context("wait for the daemon"),
        Err(_) => {
            let _ = daemon.kill().await;
            bail!("the daemon did not exit within 10 s of a shutdown request")
        }
    }
}

async fn time_version_exec(sandboxd: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = command(sandboxd)
        .arg("--version")
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .context("run sandboxd --version")?;
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("sandboxd --version exited with {status}");
    }
    Ok(elapsed)
}

// === impl Rss ===

impl Rss {
    /// Reads `VmRSS`, `RssAnon` and `RssFile` of a running process.
    pub fn of(pid: u32) -> anyhow::Result<Rss> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("read /proc/<pid>/status")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status.lines().find(|line| line.starts_with(name)).with_context(|| format!("no {name}"))?;
            let kib: u64 = line
                .trim_start_matches(name)
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("parse {line:?}"))?;
            Ok(kib * 1024)
        };
        Ok(Rss { total: field("VmRSS:")?, anon: field("RssAnon:")?, file: field("RssFile:")? })
    }
}

// === impl CpuUse ===

impl CpuUse {
    /// Sums `/proc/<pid>/task/*/schedstat` (time on a CPU) and the voluntary and involuntary
    /// context switches in `/proc/<pid>/task/*/status`. Threads that have exited are not counted.
    pub fn of(pid: u32) -> anyhow::Result<CpuUse> {
        let mut total = CpuUse::default();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).context("list /proc/<pid>/task")? {
            let task = task.context("read a task entry")?.path();
            let (Ok(schedstat), Ok(status)) =
                (std::fs::read_to_string(task.join("schedstat")), std::fs::read_to_string(task.join("status")))
            else {
                continue; // The thread exited meanwhile.
            };
            let nanos: u64 = schedstat.split_whitespace().next().and_then(|field| field.parse().ok()).unwrap_or(0);
            total.cpu += Duration::from_nanos(nanos);
            total.switches += status
                .lines()
                .filter(|line| {
                    line.starts_with("voluntary_ctxt_switches:") || line.starts_with("nonvoluntary_ctxt_switches:")
                })
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        Ok(total)
    }

    /// What was used between `earlier` and `self`.
    pub fn since(self, earlier: CpuUse) -> CpuUse {
        CpuUse { cpu: self.cpu.saturating_sub(earlier.cpu), switches: self.switches.saturating_sub(earlier.switches) }
    }

    pub fn add(&mut self, other: CpuUse) {
        self.cpu += other.cpu;
        self.switches += other.switches;
    }
}
