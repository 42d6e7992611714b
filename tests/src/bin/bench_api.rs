//! Benchmarks the control plane's API on SQLite and PostgreSQL, beside `GET /healthz` measured
//! in the same run, and prints one table.
//!
//! ```text
//! cargo run --release -p dari-tests --bin bench_api -- [--iterations N] [--concurrency N] [--postgres URL]
//! ```
//!
//! PostgreSQL is measured when `--postgres` or `DARI_TEST_POSTGRES_URL` names a server on which
//! the benchmark may create a database (`.ci/postgres start DIR` makes one).
//!
//! In order: build `dari` in this benchmark's profile; per engine, start `dari server`, publish
//! examples/echo-runtime, then time `--iterations` (default 1,000) session creations, user
//! messages and `/healthz` round trips, interleaved; the delivery of a message's event to an open
//! SSE stream; and the throughput of `--concurrency` (default 32) clients.
//!
//! Exit codes: 0 the table was printed, 1 a benchmark could not run, 2 bad usage.

use std::process::ExitCode;

use anyhow::Context;
use dari_bundle::{BundleLimits, pack, select_files};
use dari_tests::bench::api::{self, ApiTimes};
use dari_tests::bench::{self, BuildDirs, Flavor, RunInfo, Samples, Table, format_duration, parse_count};
use dari_tests::binaries::build_dari;
use dari_tests::control::{ControlServer, ENV_TEST_POSTGRES_URL, Engine};
use dari_tests::workspace_root;

const USAGE: &str = "usage: bench_api [--iterations N] [--concurrency N] [--postgres URL]";

#[derive(Debug)]
struct BenchConfig {
    iterations: usize,
    concurrency: usize,
    postgres: Option<String>,
}

fn main() -> ExitCode {
    let about = "Benchmarks the control plane's API beside /healthz in the same run.";
    bench::main(about, USAGE, parse_args(std::env::args().skip(1)), Flavor::MultiThread, |config| async move {
        run(&config).await
    })
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<BenchConfig>, String> {
    let postgres = std::env::var(ENV_TEST_POSTGRES_URL).ok().filter(|url| !url.is_empty());
    let mut config = BenchConfig { iterations: 1_000, concurrency: 32, postgres };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--iterations" => config.iterations = parse_count("--iterations", &value("--iterations")?)?,
            "--concurrency" => config.concurrency = parse_count("--concurrency", &value("--concurrency")?)?,
            "--postgres" => config.postgres = Some(value("--postgres")?),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(config))
}

async fn run(config: &BenchConfig) -> anyhow::Result<()> {
    let dirs = BuildDirs::of_current_exe()?;
    // Under `cargo run --release` this is the release profile, as a deployment runs.
    let profile = if dirs.profile == "debug" { "dev" } else { dirs.profile.as_str() };
    let dari = build_dari(&dirs.target_dir, profile)?;
    let archive = {
        let files = select_files(&workspace_root().join("examples/echo-runtime"), &BundleLimits::DEFAULT)
            .context("select examples/echo-runtime")?;
        pack(&files, &BundleLimits::DEFAULT).context("pack examples/echo-runtime")?.archive
    };
    let mut engines = vec![Engine::Sqlite];
    match &config.postgres {
        Some(url) => engines.push(Engine::Postgres(url.clone())),
        None => eprintln!("PostgreSQL not configured (--postgres or {ENV_TEST_POSTGRES_URL}): measuring SQLite only"),
    }
    let mut table = Table::default();
    for engine in engines {
        eprintln!("measuring {} ({} iterations, {} clients)", engine.name(), config.iterations, config.concurrency);
        let control = ControlServer::builder(engine.clone()).program(&dari).log_filter("warn").start().await;
        let published = control.publish_archive(&control.api_key, &archive).await;
        let agent_id = published["agent_id"].as_str().context("the publish returned no agent id")?.to_owned();
        let times = api::measure(&control, &agent_id, config.iterations, config.concurrency).await?;
        add_rows(&mut table, engine.name(), &times);
    }
    let info = RunInfo::collect(&workspace_root()).await;
    println!("bench_api on {} ({} CPUs, {}), commit {}\n", info.date, info.nproc, info.cpu, info.commit);
    print!("{}", table.render());
    Ok(())
}

fn add_rows(table: &mut Table, engine: &str, times: &ApiTimes) {
    let beside = |name: &str, samples: &Samples, table: &mut Table| {
        for (label, value, floor) in
            [("p50", samples.p50(), times.healthz.p50()), ("p99", samples.p99(), times.healthz.p99())]
        {
            table.push(
                format!("{engine}: {name}, {label} (n={})", samples.len()),
                format_duration(value),
                format!("GET /healthz, {label}: {}", format_duration(floor)),
                format!("{:.2}x", value.as_secs_f64() / floor.as_secs_f64().max(1e-9)),
            );
        }
    };
    beside("create session", &times.create_session, table);
    beside("post user.message (202)", &times.post_event, table);
    beside("user.message → its event on the SSE stream", &times.stream_delivery, table);
    let healthz_rate = 1.0 / times.healthz.p50().as_secs_f64().max(1e-9);
    table.push(
        format!("{engine}: sessions created/s, {} clients", times.concurrency),
        format!("{:.0}/s", times.create_throughput),
        format!("1 client at /healthz p50: {healthz_rate:.0}/s"),
        "-",
    );
    table.push(
        format!("{engine}: user messages accepted/s, {} clients", times.concurrency),
        format!("{:.0}/s", times.post_throughput),
        format!("1 client at /healthz p50: {healthz_rate:.0}/s"),
        "-",
    );
}
