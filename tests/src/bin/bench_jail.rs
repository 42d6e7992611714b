//! Benchmarks what the local jail costs a sandbox's start: session create → sandbox ready with
//! the jail beside the same without it, and `sandboxd --version` run in a jail beside the same run
//! plainly, all in one run, and prints one table. Needs root (or unprivileged user namespaces) for
//! the jail.
//!
//! ```text
//! cargo run --release -p dari-tests --bin bench_jail -- [--sessions N]
//! ```
//!
//! In order: build `dari` in this benchmark's profile and the static `sandboxd` as it ships; start
//! two servers on SQLite, `dari server --prewarm-sandboxes --sandbox-isolation jail` and the same
//! with `--sandbox-isolation none`, publish tests/fixtures/bench-runtime on each, then `--sessions`
//! (default 50, after 3 untimed) rounds of: a session created on each server and timed until its
//! sandbox is ready, `sandboxd jail … -- sandboxd --version` and `sandboxd --version`.
//!
//! Exit codes: 0 the table was printed, 1 a benchmark could not run, 2 bad usage.

use std::process::ExitCode;

use anyhow::Context;
use dari_tests::bench::jail::{self, JailTimes, Servers};
use dari_tests::bench::server::{self, ServerBench};
use dari_tests::bench::{self, Flavor, Samples, Table, format_duration, format_overhead};
use dari_tests::control::{ControlServer, Engine, pack_project};
use dari_tests::workspace_root;

const USAGE: &str = "usage: bench_jail [--sessions N]";

fn main() -> ExitCode {
    let about = "Benchmarks the local jail's cost on a sandbox's start, beside an unjailed start in the same run.";
    bench::main(about, USAGE, parse_args(std::env::args().skip(1)), Flavor::MultiThread, |sessions| async move {
        run(sessions).await
    })
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<usize>, String> {
    let mut sessions = 50;
    let mut postgres = None;
    let parsed = server::parse_args(args, &mut [("--sessions", &mut sessions)], &mut postgres)?;
    if postgres.is_some() {
        return Err("bench_jail measures SQLite only; --postgres does not apply".to_owned());
    }
    Ok(parsed.then_some(sessions))
}

async fn run(sessions: usize) -> anyhow::Result<()> {
    let bench = ServerBench::prepare(None)?;
    let archive = pack_project(&workspace_root().join("tests/fixtures/bench-runtime"));
    let jailed = bench.server(&Engine::Sqlite).args(["--sandbox-isolation", "jail"]).start().await;
    let plain = bench.server(&Engine::Sqlite).args(["--sandbox-isolation", "none"]).start().await;
    let (jailed_agent, plain_agent) = (publish(&jailed, &archive).await?, publish(&plain, &archive).await?);
    eprintln!("measuring {sessions} sessions on each server");
    let servers = Servers { jailed: (&jailed, &jailed_agent), plain: (&plain, &plain_agent) };
    let times = jail::measure(&servers, &bench.sandboxd, sessions).await?;
    let mut table = Table::default();
    add_rows(&mut table, &times);
    let mut notes = vec![
        "create → ready: from the POST to the sandbox.status_changed ready event on the session's stream (--prewarm-sandboxes)".to_owned(),
        "the jail: namespaces, the read-only root, /dev, /proc, cgroups (memory, pids), loopback only".to_owned(),
    ];
    notes.extend(bench.notes("bench_jail-jailed", &jailed)?);
    notes.extend(bench.notes("bench_jail-plain", &plain)?);
    bench.print_report("bench_jail", &table, &notes).await;
    Ok(())
}

async fn publish(control: &ControlServer, archive: &[u8]) -> anyhow::Result<String> {
    let published = control.publish_archive(&control.api_key, archive).await;
    published["agent_id"].as_str().map(str::to_owned).context("the publish returned no agent id")
}

fn add_rows(table: &mut Table, times: &JailTimes) {
    let rows: [(&str, &Samples, &Samples, &str); 2] = [
        ("session create → sandbox ready, jailed", &times.jailed, &times.plain, "unjailed child process"),
        ("`sandboxd --version` in a jail", &times.jail_spawn, &times.plain_spawn, "`sandboxd --version`"),
    ];
    for (measure, value, reference, reference_name) in rows {
        for (label, value, reference) in [("p50", value.p50(), reference.p50()), ("p99", value.p99(), reference.p99())]
        {
            table.push(
                format!("{measure}, {label} (n={})", times.jailed.len()),
                format_duration(value),
                format!("{reference_name}, {label}: {}", format_duration(reference)),
                format_overhead(value, reference),
            );
        }
    }
}
