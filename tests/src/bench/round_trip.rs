//! Tool round trips over the link, control → sandboxd → control on loopback, beside their
//! references: `read` of a 1 KiB file beside the WebSocket echo floor, `bash` of `true` beside
//! spawning `bash -c true` directly.
//!
//! The same tools called in this process split a round trip into the tool's own time and the
//! link's.
//!
//! The measures take turns in batches, so that a noisy stretch of the machine touches all
//! of them alike rather than one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dari_protocol::link::{ControlFrame, DaemonFrame, DaemonMessage, Operation, Outcome};
use sandboxd::tools::{BashConfig, FileLocks, ToolContext, Workspace, run_tool};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Samples;
use super::control::{BenchControl, BenchLink};
use super::daemon::{self, CpuUse, Rss};
use super::floor::{self, ECHO_BYTES, EchoFloor};

/// Each measure runs this many times in a row before the next one takes its turn.
const BATCH: usize = 100;
/// Runs of each measure before any is recorded: connections, caches and the allocator settle.
const WARMUP: usize = 100;
/// The file the `read` round trip reads.
pub(super) const READ_FILE: &str = "one-kib.txt";

/// The samples of the measures.
#[derive(Debug, Default)]
pub struct Measures {
    pub read: Samples,
    pub echo: Samples,
    pub bash: Samples,
    pub spawn: Samples,
    /// The `read` tool called in this process: the tool's own share of a round trip.
    pub read_in_process: Samples,
    /// The `bash` tool called in this process, which is dynamically linked (see `docs/benchmarks.md`
    /// on why that matters for spawning).
    pub bash_in_process: Samples,
    /// What the daemon's threads used during the `read` calls.
    pub read_daemon_use: CpuUse,
    /// What the daemon's threads used during the `bash` calls (not counting bash itself).
    pub bash_daemon_use: CpuUse,
}

/// What the round trips measured, and the daemon's memory once it served them all.
#[derive(Debug)]
pub struct RoundTrips {
    pub measures: Measures,
    /// How many requests the daemon served, warm-up included.
    pub calls: u64,
    pub rss_after_calls: Rss,
}

/// Runs `iterations` of each measure against a fresh daemon connected to `control`.
pub async fn measure(sandboxd: &Path, control: &mut BenchControl, iterations: usize) -> anyhow::Result<RoundTrips> {
    let workspace = tempfile::tempdir().context("create the daemon's workspace")?;
    std::fs::write(workspace.path().join(READ_FILE), one_kib_of_text()).context("write the file to read")?;
    let mut daemon = daemon::spawn(sandboxd, &control.url, workspace.path())?;
    let mut link = control.accept().await?;
    link.welcome().await?;
    let mut turns = Turns {
        tools: ToolCaller::new(link),
        echo: EchoFloor::start().await?,
        shell: BashConfig::for_workspace(workspace.path()).shell,
        daemon_pid: daemon.id().context("the daemon is running")?,
        workspace: workspace.path().to_path_buf(),
        local_tools: local_tools(workspace.path())?,
    };
    turns.take(WARMUP, &mut Measures::default()).await?;
    let mut measures = Measures::default();
    turns.take(iterations, &mut measures).await?;

    let rss_after_calls = Rss::of(turns.daemon_pid)?;
    let Turns { tools, echo, .. } = turns;
    echo.finish().await;
    daemon::stop(&mut daemon, tools.link).await?;
    Ok(RoundTrips { measures, calls: tools.calls, rss_after_calls })
}

/// What the measures need.
struct Turns {
    tools: ToolCaller,
    echo: EchoFloor,
    shell: PathBuf,
    workspace: PathBuf,
    daemon_pid: u32,
    /// The same workspace, for calling tools in this process.
    local_tools: ToolContext,
}

impl Turns {
    /// Runs each measure `count` times, taking turns in batches.
    async fn take(&mut self, count: usize, into: &mut Measures) -> anyhow::Result<()> {
        let read_args = json!({ "path": READ_FILE });
        let bash_args = json!({ "command": "true" });
        let mut remaining = count;
        while remaining > 0 {
            let batch = remaining.min(BATCH);
            let before = CpuUse::of(self.daemon_pid)?;
            for _ in 0..batch {
                into.read.push(self.tools.call("read", &read_args).await?);
            }
            into.read_daemon_use.add(CpuUse::of(self.daemon_pid)?.since(before));
            for _ in 0..batch {
                into.read_in_process.push(call_in_process(&self.local_tools, "read", &read_args).await?);
            }
            for _ in 0..batch {
                into.echo.push(self.echo.round_trip().await?);
            }
            let before = CpuUse::of(self.daemon_pid)?;
            for _ in 0..batch {
                into.bash.push(self.tools.call("bash", &bash_args).await?);
            }
            into.bash_daemon_use.add(CpuUse::of(self.daemon_pid)?.since(before));
            for _ in 0..batch {
                into.bash_in_process.push(call_in_process(&self.local_tools, "bash", &bash_args).await?);
            }
            for _ in 0..batch {
                into.spawn.push(floor::spawn_true(&self.shell, &self.workspace).await?);
            }
            remaining -= batch;
        }
        Ok(())
    }
}

/// Sends tool requests over one link, one at a time, and acknowledges their results.
pub(super) struct ToolCaller {
    pub(super) link: BenchLink,
    calls: u64,
}

impl ToolCaller {
    pub(super) fn new(link: BenchLink) -> ToolCaller {
        ToolCaller { link, calls: 0 }
    }

    /// Runs one tool and returns the time from sending its request to reading its result. The
    /// acknowledgement that follows is not timed: control sends it after it has the result.
    pub(super) async fn call(&mut self, name: &str, arguments: &Value) -> anyhow::Result<Duration> {
        self.calls += 1;
        let id = format!("bench_{}", self.calls);
        let request = ControlFrame::Request {
            id: id.clone(),
            op: Operation::ToolRun { name: name.to_owned(), arguments: arguments.clone() },
        };
        let started = Instant::now();
        self.link.send(&request).await?;
        let (seq, outcome) = loop {
            match self.link.recv().await? {
                DaemonFrame::Outbox { seq, message: DaemonMessage::Result { request_id, outcome } }
                    if request_id == id =>
                {
                    break (seq, outcome);
                }
                DaemonFrame::Outbox { .. } => continue,
                frame => bail!("expected an outbox message, got {frame:?}"),
            }
        };
        let elapsed = started.elapsed();
        self.link.send(&ControlFrame::Ack { through: seq }).await?;
        match outcome {
            Outcome::Ok { value } if value["is_error"] != Value::Bool(true) => Ok(elapsed),
            Outcome::Ok { value } => bail!("the {name} tool failed: {value}"),
            Outcome::Error { error } => bail!("the {name} request failed: {} ({})", error.message, error.code),
        }
    }
}

/// The daemon's tools on `workspace`, to call in this process.
pub(super) fn local_tools(workspace: &Path) -> anyhow::Result<ToolContext> {
    Ok(ToolContext {
        workspace: Workspace::new(workspace).context("open the workspace")?,
        locks: FileLocks::default(),
        bash: BashConfig::for_workspace(workspace),
    })
}

/// Runs a tool in this process and times it.
pub(super) async fn call_in_process(context: &ToolContext, name: &str, arguments: &Value) -> anyhow::Result<Duration> {
    let arguments = arguments.clone();
    let started = Instant::now();
    let result = run_tool(context, name, arguments, CancellationToken::new(), None).await;
    let elapsed = started.elapsed();
    if result.is_error {
        bail!("the {name} tool failed in process: {:?}", result.content);
    }
    Ok(elapsed)
}

/// 1,024 bytes of text in lines of 64, like a small source file.
pub(super) fn one_kib_of_text() -> String {
    let line: String = "abcdefghijklmnopqrstuvwxyz0123456789".chars().cycle().take(63).chain(['\n']).collect();
    line.repeat(ECHO_BYTES / line.len())
}
