//! Benchmarks sandboxd against references measured in the same run, and prints one table.
//!
//! ```text
//! cargo run --release -p dari-tests --bin bench_sandboxd -- [--iterations N] [--grep-runs N] [--starts N]
//! ```
//!
//! `--sandboxd PATH` measures that binary instead of building one, for example a build with
//! other profile settings or with symbols for `perf`.
//!
//! In order: build the static daemon as it ships (the `sandboxd` profile); measure its stripped size; start it `--starts`
//! times (default 20) for exec-to-hello and idle memory; time `--iterations` (default 2,000) tool
//! round trips of `read` and `bash` beside the WebSocket echo floor and a direct spawn; grep a
//! generated 200 MB tree `--grep-runs` times (default 5) beside `rg`; print the table.
//!
//! Exit codes: 0 the table was printed (whatever it says), 1 a benchmark could not run, 2 bad
//! usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use dari_tests::bench::control::BenchControl;
use dari_tests::bench::daemon::{self, BinarySize, Startup};
use dari_tests::bench::grep::{self, GrepTimes, Tree};
use dari_tests::bench::round_trip::{self, RoundTrips};
use dari_tests::bench::{self, BuildDirs, Flavor, RunInfo, Table, format_duration, format_mib, parse_count, verdict};
use dari_tests::binaries::SANDBOXD_PROFILE;
use dari_tests::workspace_root;

const USAGE: &str = "usage: bench_sandboxd [--iterations N] [--grep-runs N] [--starts N] [--sandboxd PATH]";

/// DESIGN.md §9: a read round trip within this much of the loopback floor at p50.
const READ_OVER_FLOOR_TARGET: Duration = Duration::from_micros(100);
/// DESIGN.md §9: `bash` of `true` within this factor of spawning `bash -c true` directly.
const BASH_RATIO_TARGET: f64 = 1.2;
/// DESIGN.md §9: grep within this factor of `rg`.
const GREP_RATIO_TARGET: f64 = 1.5;
const BINARY_MIB_TARGET: f64 = 8.0;
const START_TARGET: Duration = Duration::from_millis(20);
const IDLE_RSS_MIB_TARGET: f64 = 6.0;

/// How much of each benchmark to run.
#[derive(Debug)]
struct BenchConfig {
    iterations: usize,
    grep_runs: usize,
    starts: usize,
    /// A daemon binary to measure instead of the one built from the workspace.
    sandboxd: Option<PathBuf>,
}

fn main() -> ExitCode {
    let about = "Benchmarks sandboxd against references measured in the same run.";
    bench::main(about, USAGE, parse_args(std::env::args().skip(1)), Flavor::CurrentThread, |config| async move {
        run(&config).await
    })
}

/// The configuration, or `None` when help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<BenchConfig>, String> {
    let mut config = BenchConfig { iterations: 2_000, grep_runs: 5, starts: 20, sandboxd: None };
    while let Some(flag) = args.next() {
        if flag == "--sandboxd" {
            config.sandboxd = Some(args.next().ok_or("--sandboxd needs a path")?.into());
            continue;
        }
        let slot = match flag.as_str() {
            "--iterations" => &mut config.iterations,
            "--grep-runs" => &mut config.grep_runs,
            "--starts" => &mut config.starts,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        };
        let value = args.next().ok_or_else(|| format!("{flag} needs a number"))?;
        *slot = parse_count(&flag, &value)?;
    }
    Ok(Some(config))
}

async fn run(config: &BenchConfig) -> anyhow::Result<()> {
    let info = RunInfo::collect(&workspace_root()).await;
    let dirs = BuildDirs::of_current_exe()?;
    if dirs.profile != "release" {
        eprintln!("warning: built in the {} profile; run with --release for figures that mean anything", dirs.profile);
    }
    let sandboxd = match &config.sandboxd {
        Some(path) => path.clone(),
        None => {
            eprintln!("building sandboxd (static, {SANDBOXD_PROFILE} profile)");
            daemon::build(&dirs)?
        }
    };
    let tree = grep::tree(&dirs.target_dir)?;

    eprintln!("measuring the binary and its starts");
    let size = daemon::binary_size(&sandboxd).await?;
    let mut control = BenchControl::start().await?;
    let workspace = tempfile::tempdir().context("create a workspace")?;
    let startup = daemon::startup(&sandboxd, &mut control, workspace.path(), config.starts).await?;
    eprintln!("timing {} round trips of each kind", config.iterations);
    let round_trips = round_trip::measure(&sandboxd, &mut control, config.iterations).await?;
    eprintln!("grepping a tree of {} files, timed runs of each: {}", tree.files, config.grep_runs);
    let grep_times = grep::measure(&tree, config.grep_runs).await?;

    println!("sandboxd benchmarks, {} (UTC)", info.date);
    println!("machine: {} CPUs (nproc), {}", info.nproc, info.cpu);
    println!("commit:  {}", info.commit);
    match &config.sandboxd {
        Some(path) => println!("daemon:  {} (given)", path.display()),
        None => println!("daemon:  {} ({SANDBOXD_PROFILE} profile)", sandboxd.display()),
    }
    println!();
    let mut table = Table::default();
    push_round_trips(&mut table, &round_trips);
    push_grep(&mut table, &tree, &grep_times, config.grep_runs);
    push_daemon(&mut table, &size, &startup, &round_trips);
    print!("{}", table.render());
    println!();
    print_notes(&round_trips, &grep_times, &startup);
    Ok(())
}

fn push_round_trips(table: &mut Table, round_trips: &RoundTrips) {
    let measures = &round_trips.measures;
    let n = measures.read.len();
    for (label, read, echo) in
        [("p50", measures.read.p50(), measures.echo.p50()), ("p99", measures.read.p99(), measures.echo.p99())]
    {
        let over_floor = read.saturating_sub(echo);
        let target = if label == "p50" {
            format!(
                " (target ≤ +{}: {})",
                format_duration(READ_OVER_FLOOR_TARGET),
                verdict(over_floor <= READ_OVER_FLOOR_TARGET)
            )
        } else {
            String::new()
        };
        table.push(
            format!("`read` 1 KiB over the link, {label} (n={n})"),
            format_duration(read),
            format!("WebSocket echo 1 KiB, {label}: {}", format_duration(echo)),
            format!("+{}, {}{target}", format_duration(over_floor), ratio(read, echo)),
        );
    }
    for (label, bash, spawn) in
        [("p50", measures.bash.p50(), measures.spawn.p50()), ("p99", measures.bash.p99(), measures.spawn.p99())]
    {
        let factor = bash.as_secs_f64() / spawn.as_secs_f64();
        let target = if label == "p50" {
            format!(" (target ≤ {BASH_RATIO_TARGET}x: {})", verdict(factor <= BASH_RATIO_TARGET))
        } else {
            String::new()
        };
        table.push(
            format!("`bash` of `true` over the link, {label} (n={n})"),
            format_duration(bash),
            format!("spawn `bash -c true`, {label}: {}", format_duration(spawn)),
            format!("{}{target}", ratio(bash, spawn)),
        );
    }
}

fn push_grep(table: &mut Table, tree: &Tree, times: &GrepTimes, runs: usize) {
    let measure = format!(
        "`grep` in process, tree of {} files, {:.0} MB (median of {runs})",
        tree.files,
        tree.bytes as f64 / 1e6
    );
    let ours = times.ours.p50();
    let Some(rg) = &times.rg else {
        table.push(measure, format_duration(ours), "rg not installed: skipped", "-");
        return;
    };
    let factor = ours.as_secs_f64() / rg.default.p50().as_secs_f64();
    table.push(
        measure,
        format_duration(ours),
        format!("`rg`: {}", format_duration(rg.default.p50())),
        format!(
            "{} (target ≤ {GREP_RATIO_TARGET}x: {})",
            ratio(ours, rg.default.p50()),
            verdict(factor <= GREP_RATIO_TARGET)
        ),
    );
    table.push(
        "`grep`, same run, beside rg in path order",
        format_duration(ours),
        format!("`rg --sort path`: {}", format_duration(rg.sorted.p50())),
        ratio(ours, rg.sorted.p50()),
    );
}

fn push_daemon(table: &mut Table, size: &BinarySize, startup: &Startup, round_trips: &RoundTrips) {
    let mib = size.bytes as f64 / (1024.0 * 1024.0);
    let how = if size.already_stripped { "as built, stripped" } else { "a stripped copy" };
    table.push(
        format!("static binary size ({how})"),
        format_mib(size.bytes),
        "-",
        format!("target ≤ {BINARY_MIB_TARGET} MiB: {}", verdict(mib <= BINARY_MIB_TARGET)),
    );
    let to_hello = startup.exec_to_hello.p50();
    table.push(
        format!("exec → hello on control (median of {})", startup.exec_to_hello.len()),
        format_duration(to_hello),
        format!("exec → exit of `sandboxd --version`: {}", format_duration(startup.exec_to_exit.p50())),
        format!(
            "{} (target < {}: {})",
            ratio(to_hello, startup.exec_to_exit.p50()),
            format_duration(START_TARGET),
            verdict(to_hello < START_TARGET)
        ),
    );
    let idle = startup.idle_rss;
    table.push(
        format!("idle RSS, {} s after connecting", daemon::IDLE_BEFORE_RSS.as_secs()),
        format_mib(idle.total),
        format!("anon {}, file {}", format_mib(idle.anon), format_mib(idle.file)),
        format!(
            "target ≤ {IDLE_RSS_MIB_TARGET} MiB: {}",
            verdict(idle.total as f64 / (1024.0 * 1024.0) <= IDLE_RSS_MIB_TARGET)
        ),
    );
    let after = round_trips.rss_after_calls;
    table.push(
        format!("RSS after {} tool calls", round_trips.calls),
        format_mib(after.total),
        format!("anon {}, file {}", format_mib(after.anon), format_mib(after.file)),
        "no target",
    );
}

fn print_notes(round_trips: &RoundTrips, grep_times: &GrepTimes, startup: &Startup) {
    let measures = &round_trips.measures;
    println!(
        "the same tools called in this process (no link): `read` p50 {}, `bash` p50 {}",
        format_duration(measures.read_in_process.p50()),
        format_duration(measures.bash_in_process.p50())
    );
    for (name, daemon_use, calls) in [
        ("read", measures.read_daemon_use, measures.read.len()),
        ("bash", measures.bash_daemon_use, measures.bash.len()),
    ] {
        println!(
            "per `{name}` round trip the daemon's threads used {} of CPU and {:.1} context switches",
            format_duration(daemon_use.cpu / calls.max(1) as u32),
            daemon_use.switches as f64 / calls.max(1) as f64
        );
    }
    println!(
        "exec → hello: min {}, p99 {}",
        format_duration(startup.exec_to_hello.percentile(0.0)),
        format_duration(startup.exec_to_hello.p99())
    );
    match &grep_times.rg {
        Some(rg) if rg.matches == grep_times.ours_matches => {
            println!("grep and rg found the same {} matching lines, pattern {:?}", rg.matches, grep::PATTERN);
        }
        Some(rg) => println!(
            "WARNING: grep found {} matching lines and rg {}: they did not search the same files",
            grep_times.ours_matches, rg.matches
        ),
        None => println!("rg not installed: skipped (grep found {} matching lines)", grep_times.ours_matches),
    }
}

/// `value / reference` as a factor.
fn ratio(value: Duration, reference: Duration) -> String {
    format!("{:.2}x", value.as_secs_f64() / reference.as_secs_f64())
}
