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
use dari_tests::bench::sessions::{self, SessionTimes, SessionsConfig};
use dari_tests::bench::{self, BuildDirs, Flavor, RunInfo, Table, format_duration, parse_count, verdict};
use dari_tests::binaries::{SANDBOXD_PROFILE, build_dari, build_static_sandboxd};
use dari_tests::control::{ControlServer, ENV_TEST_POSTGRES_URL, Engine, pack_project};
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

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<BenchConfig>, String> {
    let postgres = std::env::var(ENV_TEST_POSTGRES_URL).ok().filter(|url| !url.is_empty());
    let sessions = SessionsConfig { sessions: 50, messages: 500, warmup: 20, concurrent_sessions: 100, turns: 20 };
    let mut config = BenchConfig { sessions, postgres };
    while let Some(flag) = args.next() {
        if flag == "--postgres" {
            config.postgres = Some(args.next().ok_or("--postgres needs a URL")?);
            continue;
        }
        let slot = match flag.as_str() {
            "--sessions" => &mut config.sessions.sessions,
            "--messages" => &mut config.sessions.messages,
            "--warmup" => &mut config.sessions.warmup,
            "--concurrent-sessions" => &mut config.sessions.concurrent_sessions,
            "--turns" => &mut config.sessions.turns,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        };
        let value = args.next().ok_or_else(|| format!("{flag} needs a number"))?;
        *slot = parse_count(&flag, &value)?;
    }
    Ok(Some(config))
}

async fn run(config: &BenchConfig) -> anyhow::Result<()> {
    let dirs = BuildDirs::of_current_exe()?;
    // Under `cargo run --release` this is the release profile, as a deployment runs.
    let profile = if dirs.profile == "debug" { "dev" } else { dirs.profile.as_str() };
    if profile != "release" {
        eprintln!("warning: built in the {profile} profile; run with --release for figures that mean anything");
    }
    eprintln!("building dari ({profile} profile) and sandboxd (static, {SANDBOXD_PROFILE} profile)");
    let dari = build_dari(&dirs.target_dir, profile)?;
    let sandboxd = build_static_sandboxd(&dirs.target_dir, SANDBOXD_PROFILE)?;
    let archive = pack_project(&workspace_root().join("tests/fixtures/bench-runtime"));
    let mut engines = vec![Engine::Sqlite];
    match &config.postgres {
        Some(url) => engines.push(Engine::Postgres(url.clone())),
        None => eprintln!("PostgreSQL not configured (--postgres or {ENV_TEST_POSTGRES_URL}): measuring SQLite only"),
    }
    // `DARI_LOG` set for the benchmark reaches the servers, whose logs are then kept (to see
    // where a turn's time goes: `DARI_LOG=warn,sqlx=debug,dari_control=debug`).
    let kept_log = std::env::var("DARI_LOG").ok().filter(|filter| !filter.is_empty());
    let log_filter = kept_log.clone().unwrap_or_else(|| "warn".to_owned());
    let mut table = Table::default();
    let mut notes = Vec::new();
    for engine in engines {
        eprintln!("measuring {}", engine.name());
        let control = ControlServer::builder(engine.clone())
            .program(&dari)
            .sandboxd(&sandboxd)
            .workers(256)
            .args(["--prewarm-sandboxes"])
            .log_filter(&log_filter)
            .start()
            .await;
        let published = control.publish_archive(&control.api_key, &archive).await;
        let agent_id = published["agent_id"].as_str().context("the publish returned no agent id")?.to_owned();
        let times = sessions::measure(&control, &agent_id, &sandboxd, &config.sessions).await?;
        add_rows(&mut table, &engine, &times, &config.sessions);
        if kept_log.is_some() {
            let path = dirs.target_dir.join(format!("bench-data/bench_sessions-{}.log", engine.name()));
            std::fs::create_dir_all(dirs.target_dir.join("bench-data")).context("create bench-data")?;
            std::fs::write(&path, control.log()).with_context(|| format!("write {}", path.display()))?;
            notes.push(format!("{}: the server's log (DARI_LOG={log_filter}) is in {}", engine.name(), path.display()));
        }
        let warnings = control.unexpected_warnings(&[]);
        if !warnings.is_empty() {
            notes.push(format!(
                "{}: the server logged {} warnings, the first: {}",
                engine.name(),
                warnings.len(),
                warnings[0]
            ));
        }
    }
    let info = RunInfo::collect(&workspace_root()).await;
    println!("bench_sessions on {} ({} CPUs, {}), commit {}", info.date, info.nproc, info.cpu, info.commit);
    println!("daemon: {} ({SANDBOXD_PROFILE} profile)\n", sandboxd.display());
    print!("{}", table.render());
    println!();
    println!("```text");
    println!(
        "create → ready: from the POST to the event on the session's stream, opened after the POST and read from its start"
    );
    println!(
        "turns: each read as message.status_changed \"completed\" on a stream opened before; direct: one connection per advance, as sandboxd posts"
    );
    for note in notes {
        println!("{note}");
    }
    println!("```");
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
            format!("{}{target}", ratio(value, reference)),
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

fn ratio(value: Duration, reference: Duration) -> String {
    format!(
        "+{}, {:.2}x",
        format_duration(value.saturating_sub(reference)),
        value.as_secs_f64() / reference.as_secs_f64().max(1e-9)
    )
}
