//! The benchmarks (`docs/benchmarks.md`): sandboxd's (`bench_sandboxd`), the API's (`bench_api`),
//! sessions that run (`bench_sessions`) and the managed pi harness's own overhead (`bench_pi`),
//! each run by `cargo run --release -p dari-tests --bin NAME`.
//!
//! These machines are noisy, so no figure is printed alone: each one stands beside a reference
//! measured in the same run (a loopback WebSocket echo, a direct process spawn, the `rg` binary),
//! and the verdict against DESIGN.md §9 is read from the ratio or the difference. Benchmarks are
//! not tests: nothing here asserts on a timing.

pub mod api;
pub mod control;
pub mod daemon;
pub mod floor;
pub mod grep;
pub mod jail;
pub mod pi;
pub mod round_trip;
pub mod server;
pub mod sessions;

use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

/// Timings of one measure, kept in the order they were taken.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    durations: Vec<Duration>,
}

/// One line of the results table.
#[derive(Debug)]
pub struct Row {
    pub measure: String,
    pub value: String,
    pub reference: String,
    /// The ratio or difference to the reference, and the target with its verdict.
    pub verdict: String,
}

/// The results table, printed as Markdown so that it can be pasted into `docs/benchmarks.md`.
#[derive(Debug, Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

/// Where and when a run happened.
#[derive(Debug)]
pub struct RunInfo {
    pub date: String,
    pub nproc: usize,
    pub cpu: String,
    pub commit: String,
}

/// Where the benchmark runs from: `<target_dir>/<profile>/bench_sandboxd`.
#[derive(Debug)]
pub struct BuildDirs {
    pub target_dir: PathBuf,
    /// `release` under `cargo run --release`.
    pub profile: String,
}

/// Starts a process the benchmark needs (the daemon, `rg`, `git`, `strip`), with no stdin; it is
/// killed if dropped before it exits.
#[allow(clippy::disallowed_methods, reason = "the benchmark's one helper that starts processes")]
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.stdin(std::process::Stdio::null()).kill_on_drop(true);
    command
}

/// The runtime a benchmark's `run` needs.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    /// One thread: the benchmark stays off the CPU the measured process runs on.
    CurrentThread,
    /// Many clients at once.
    MultiThread,
}

/// A benchmark binary's `main`: `parsed` is its arguments (`None` when help was asked for, an
/// error for bad usage), `run` the benchmark. Maps the outcome to the exit codes every benchmark
/// documents: 0 printed, 1 a benchmark could not run, 2 bad usage.
pub fn main<C, F>(
    about: &str,
    usage: &str,
    parsed: Result<Option<C>, String>,
    flavor: Flavor,
    run: impl FnOnce(C) -> F,
) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let config = match parsed {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{about}\n{usage}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}\n{usage}");
            return ExitCode::from(2);
        }
    };
    let mut builder = match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// A count given on the command line: a positive number.
pub fn parse_count(flag: &str, text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|count| *count > 0)
        .ok_or_else(|| format!("{flag} {text:?}: not a positive number"))
}

/// A duration the way people read it: µs below a millisecond, ms below a second.
pub fn format_duration(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// How much longer `value` took than `reference`, and the ratio: "+1.20 ms, 2.50x".
pub fn format_overhead(value: Duration, reference: Duration) -> String {
    format!(
        "+{}, {:.2}x",
        format_duration(value.saturating_sub(reference)),
        value.as_secs_f64() / reference.as_secs_f64().max(1e-9)
    )
}

/// A byte count in MiB, with two decimals.
pub fn format_mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// "met" or "missed", for the verdict column.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

// === impl BuildDirs ===

impl BuildDirs {
    /// Found from this executable's path. (The test harness looks for a test binary's
    /// `target/<profile>/deps/` instead, one level deeper.)
    pub fn of_current_exe() -> anyhow::Result<BuildDirs> {
        let exe = std::env::current_exe().context("find this executable's path")?;
        let profile_dir = exe.parent().context("this executable sits in target/<profile>/")?;
        let target_dir = profile_dir.parent().context("target/<profile>/ sits in a target directory")?;
        let profile = profile_dir.file_name().and_then(|name| name.to_str()).context("a profile directory name")?;
        Ok(BuildDirs { target_dir: target_dir.to_path_buf(), profile: profile.to_owned() })
    }
}

// === impl Samples ===

impl Samples {
    pub fn push(&mut self, duration: Duration) {
        self.durations.push(duration);
    }

    pub fn len(&self) -> usize {
        self.durations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.durations.is_empty()
    }

    /// The nearest-rank percentile: the smallest sample with at least `percent` % of the samples
    /// at or below it.
    pub fn percentile(&self, percent: f64) -> Duration {
        let mut sorted = self.durations.clone();
        sorted.sort_unstable();
        let Some(&last) = sorted.last() else { return Duration::ZERO };
        let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
        sorted.get(rank.saturating_sub(1)).copied().unwrap_or(last)
    }

    pub fn p50(&self) -> Duration {
        self.percentile(50.0)
    }

    pub fn p99(&self) -> Duration {
        self.percentile(99.0)
    }
}

// === impl Table ===

impl Table {
    pub fn push(
        &mut self,
        measure: impl Into<String>,
        value: impl Into<String>,
        reference: impl Into<String>,
        verdict: impl Into<String>,
    ) {
        let row =
            Row { measure: measure.into(), value: value.into(), reference: reference.into(), verdict: verdict.into() };
        self.rows.push(row);
    }

    /// The table as aligned Markdown.
    pub fn render(&self) -> String {
        let header = ["measure", "value", "reference (same run)", "ratio / target"];
        let cells: Vec<[&str; 4]> = self
            .rows
            .iter()
            .map(|row| [row.measure.as_str(), row.value.as_str(), row.reference.as_str(), row.verdict.as_str()])
            .collect();
        let mut widths = header.map(|title| title.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: [&str; 4]| {
            for (cell, width) in cells.iter().zip(widths) {
                let _ = write!(out, "| {cell}{} ", " ".repeat(width - cell.chars().count()));
            }
            out.push_str("|\n");
        };
        line(header);
        let rules = widths.map(|width| "-".repeat(width));
        line([&rules[0], &rules[1], &rules[2], &rules[3]]);
        for row in cells {
            line(row);
        }
        out
    }
}

// === impl RunInfo ===

impl RunInfo {
    /// Today's date (UTC), the number of CPUs, the CPU model and the workspace's git commit.
    pub async fn collect(workspace: &Path) -> RunInfo {
        let nproc = std::thread::available_parallelism().map_or(1, usize::from);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let commit = git(workspace, &["rev-parse", "--short=12", "HEAD"]).await.unwrap_or_else(|| "unknown".to_owned());
        let dirty = git(workspace, &["status", "--porcelain", "--untracked-files=no"])
            .await
            .is_some_and(|status| !status.is_empty());
        let commit = if dirty { format!("{commit} (with uncommitted changes)") } else { commit };
        RunInfo { date: today_utc(), nproc, cpu, commit }
    }
}

async fn git(workspace: &Path, args: &[&str]) -> Option<String> {
    let output = command("git").args(args).current_dir(workspace).output().await.ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The current date in UTC as `YYYY-MM-DD`, from the civil-from-days algorithm of Howard Hinnant.
fn today_utc() -> String {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
