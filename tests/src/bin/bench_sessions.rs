//! Benchmarks sessions that run (sandboxes, turns) on SQLite and PostgreSQL, each figure beside a
//! reference measured in the same run, and prints one table.
//!
//! ```text
//! cargo run --release -p dari-tests --bin bench_sessions -- [--sessions N] [--messages N] [--warmup N]
//!     [--concurrent-sessions N] [--turns N] [--postgres URL]
//! ```
//!
//! PostgreSQL is measured when `--postgres` or `DARI_TEST_POSTGRES_URL` names a server on which
//! the benchmark may create a database (`.ci/postgres start DIR` makes one).
//!
//! In order: build `dari` in this benchmark's profile and the static `sandboxd` as it ships; per
//! engine, start `dari server --prewarm-sandboxes --workers 256`, publish
//! tests/fixtures/bench-runtime, then time `--sessions` (default 50) session creations until the
//! sandbox is ready beside spawns of `sandboxd --version`; `--messages` (default 500, after
//! `--warmup`, default 20) turns on one session beside the same advance posted to its runtime
//! directly; and `--concurrent-sessions` (default 100) sessions sending `--turns` (default 20)
//! messages each, all at once, beside as many direct advances with the same concurrency.
//!
//! Exit codes: 0 the table was printed, 1 a benchmark could not run, 2 bad usage.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use dari_tests::bench::server::{self, ServerBench, postgres_from_env};
use dari_tests::bench::sessions::{self, SessionTimes, SessionsConfig};
use dari_tests::bench::{self, Flavor, Table, format_duration, format_overhead, verdict};
use dari_tests::control::{Engine, pack_project};
use dari_tests::workspace_root;

const USAGE: &str = "usage: bench_sessions [--sessions N] [--messages N] [--warmup N] [--concurrent-sessions N] \
                     [--turns N] [--postgres URL]";

/// DESIGN.md §9: session create → sandbox ready (local provider) at p50.
const READY_TARGET: Duration = Duration::from_millis(100);
/// DESIGN.md §9: the control plane's overhead on a turn at p50.
const OVERHEAD_TARGET: Duration = Duration::from_millis(5);
/// DESIGN.md §9: turns per second over 100 concurrent sessions, with SQLite.
const TURNS_PER_SECOND_TARGET: f64 = 300.0;

#[derive(Debug)]
struct BenchConfig {
    sessions: SessionsConfig,
    postgres: Option<String>,
}

fn main() -> ExitCode {
    let about = "Benchmarks sessions that run beside references measured in the same run.";
    bench::main(about, USAGE, parse_args(std::env::args().skip(1)), Flavor::MultiThread, |config| async move {
        run(&config).await
    })
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<BenchConfig>, String> {
    let sessions = SessionsConfig { sessions: 50, messages: 500, warmup: 20, concurrent_sessions: 100, turns: 20 };
    let mut config = BenchConfig { sessions, postgres: postgres_from_env() };
    let SessionsConfig { sessions, messages, warmup, concurrent_sessions, turns } = &mut config.sessions;
    let counts = &mut [
        ("--sessions", sessions),
        ("--messages", messages),
        ("--warmup", warmup),
        ("--concurrent-sessions", concurrent_sessions),
        ("--turns", turns),
    ];
    Ok(server::parse_args(args, counts, &mut config.postgres)?.then_some(config))
}

async fn run(config: &BenchConfig) -> anyhow::Result<()> {
    let bench = ServerBench::prepare(config.postgres.as_deref())?;
    let archive = pack_project(&workspace_root().join("tests/fixtures/bench-runtime"));
    let mut table = Table::default();
    let mut notes = vec![
        "create → ready: from the POST to the event on the session's stream, opened after the POST and read from its start".to_owned(),
        "turns: each read as message.status_changed \"completed\" on a stream opened before; direct: one connection per advance, as sandboxd posts".to_owned(),
    ];
    for engine in &bench.engines {
        eprintln!("measuring {}", engine.name());
        let control = bench.server(engine).start().await;
        let published = control.publish_archive(&control.api_key, &archive).await;
        let agent_id = published["agent_id"].as_str().context("the publish returned no agent id")?.to_owned();
        let times = sessions::measure(&control, &agent_id, &bench.sandboxd, &config.sessions).await?;
        add_rows(&mut table, engine, &times, &config.sessions);
        notes.extend(bench.notes("bench_sessions", &control)?);
    }
    bench.print_report("bench_sessions", &table, &notes).await;
    Ok(())
}

fn add_rows(table: &mut Table, engine: &Engine, times: &SessionTimes, config: &SessionsConfig) {
    let name = engine.name();
    for (label, value, reference) in
        [("p50", times.ready.p50(), times.spawn.p50()), ("p99", times.ready.p99(), times.spawn.p99())]
    {
        let target = target_note(label == "p50", READY_TARGET, value < READY_TARGET);
        table.push(
            format!("{name}: session create → sandbox ready, {label} (n={})", times.ready.len()),
            format_duration(value),
            format!("exec → exit of `sandboxd --version`, {label}: {}", format_duration(reference)),
            format!("{}{target}", format_overhead(value, reference)),
        );
    }
    for (label, value, reference) in
        [("p50", times.turn.p50(), times.direct.p50()), ("p99", times.turn.p99(), times.direct.p99())]
    {
        let overhead = value.saturating_sub(reference);
        let target = target_note(label == "p50", OVERHEAD_TARGET, overhead < OVERHEAD_TARGET);
        table.push(
            format!("{name}: message → completed on the stream, {label} (n={})", times.turn.len()),
            format_duration(value),
            format!("advance posted to the runtime, {label}: {}", format_duration(reference)),
            format!("+{}{target}", format_duration(overhead)),
        );
    }
    let (platform, direct) = (times.load.per_second(), times.direct_load.per_second());
    let target = if matches!(engine, Engine::Sqlite) {
        format!(" (target ≥ {TURNS_PER_SECOND_TARGET:.0}/s: {})", verdict(platform >= TURNS_PER_SECOND_TARGET))
    } else {
        String::new()
    };
    table.push(
        format!("{name}: turns/s, {} sessions × {} turns", config.concurrent_sessions, config.turns),
        format!("{platform:.0}/s"),
        format!("{} advances at once to one runtime: {direct:.0}/s", config.concurrent_sessions),
        format!("{:.2}x{target}", platform / direct.max(1e-9)),
    );
}

/// " (target < T: met)" on the row that has a target.
fn target_note(has_target: bool, target: Duration, met: bool) -> String {
    if has_target { format!(" (target < {}: {})", format_duration(target), verdict(met)) } else { String::new() }
}
