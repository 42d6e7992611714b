//! Benchmarks the managed pi harness's own overhead per model turn and per tool call, with a
//! fake model provider that answers at once, on SQLite and PostgreSQL; each figure beside a
//! reference measured in the same run, and prints one table.
//!
//! ```text
//! cargo run --release -p dari-tests --bin bench_pi -- [--messages N] [--warmup N] [--postgres URL]
//! ```
//!
//! PostgreSQL is measured when `--postgres` or `DARI_TEST_POSTGRES_URL` names a server on which
//! the benchmark may create a database (`.ci/postgres start DIR` makes one).
//!
//! In order: build `dari` in this benchmark's profile and the static `sandboxd` as it ships; per
//! engine, start the fake model provider (`tests/src/fake_llm.rs`) and `dari server
//! --prewarm-sandboxes --workers 256 --openai-base-url FAKE` with a platform OpenAI key, publish a
//! pi agent on `openai/gpt-bench`, then run `--warmup` (default 10) untimed rounds and
//! `--messages` (default 200) timed ones (`tests/src/bench/pi.rs`). A round is a text turn beside
//! the same model request posted to the fake directly, and a message whose model calls `read`
//! beside the same `read` over the link to a daemon of the benchmark's own.
//!
//! Exit codes: 0 the table was printed, 1 a benchmark could not run, 2 bad usage.

use std::process::ExitCode;

use anyhow::Context;
use dari_tests::bench::pi::{self, PiConfig, PiTimes, SESSION_ROUNDS};
use dari_tests::bench::server::{self, ServerBench, postgres_from_env};
use dari_tests::bench::{self, Flavor, Samples, Table, format_duration, format_overhead};
use dari_tests::control::{Engine, pack_project};
use dari_tests::fake_llm::FakeLlm;
use dari_tests::write_tree;

const USAGE: &str = "usage: bench_pi [--messages N] [--warmup N] [--postgres URL]";

/// The benchmarked agent: pi on an OpenAI model, with the default tools (`read` among them).
const MANIFEST: &str =
    "name: pi-bench\nharness: pi\ninstructions:\n  system: prompts/system.md\nllm:\n  model: openai/gpt-bench\n";
const INSTRUCTIONS: &str = "You are the benchmark's agent. Answer briefly.";
/// The platform's OpenAI key, which the server sends to the fake.
const PLATFORM_KEY: &str = "sk-platform-bench";

#[derive(Debug)]
struct BenchConfig {
    pi: PiConfig,
    postgres: Option<String>,
}

fn main() -> ExitCode {
    let about = "Benchmarks the pi harness's overhead per model turn and per tool call beside references measured in the same run.";
    bench::main(about, USAGE, parse_args(std::env::args().skip(1)), Flavor::MultiThread, |config| async move {
        run(&config).await
    })
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<BenchConfig>, String> {
    let mut config = BenchConfig { pi: PiConfig { messages: 200, warmup: 10 }, postgres: postgres_from_env() };
    let PiConfig { messages, warmup } = &mut config.pi;
    let counts = &mut [("--messages", messages), ("--warmup", warmup)];
    Ok(server::parse_args(args, counts, &mut config.postgres)?.then_some(config))
}

async fn run(config: &BenchConfig) -> anyhow::Result<()> {
    let bench = ServerBench::prepare(config.postgres.as_deref())?;
    let project = tempfile::tempdir().context("create a directory for the agent's project")?;
    write_tree(project.path(), [("dari.yml", MANIFEST.as_bytes()), ("prompts/system.md", INSTRUCTIONS.as_bytes())]);
    let archive = pack_project(project.path());
    let mut table = Table::default();
    let mut notes = vec![
        "model turn: the message's model answers with text at once; read as message.status_changed \"completed\" on a stream opened before; direct: the request the harness sent, posted again by the benchmark on a pooled connection and read to its end".to_owned(),
        format!("tool call: the fake's answer calling `read` of a 1 KiB file handed out → the next model request (with the result) received; sessions of {SESSION_ROUNDS} rounds, each a turn and a tool call"),
    ];
    for engine in &bench.engines {
        eprintln!("measuring {}: {} rounds after {} of warm-up", engine.name(), config.pi.messages, config.pi.warmup);
        let fake = FakeLlm::start().await;
        let control = bench
            .server(engine)
            .env("OPENAI_API_KEY", PLATFORM_KEY)
            .args(["--openai-base-url".to_owned(), fake.openai_base_url()])
            .start()
            .await;
        let published = control.publish_archive(&control.api_key, &archive).await;
        let agent_id = published["agent_id"].as_str().context("the publish returned no agent id")?.to_owned();
        let times = pi::measure(&control, &agent_id, &fake, &bench.sandboxd, &config.pi).await?;
        add_rows(&mut table, engine, &times);
        notes.extend(split_notes(engine, &times));
        notes.extend(bench.notes("bench_pi", &control)?);
    }
    bench.print_report("bench_pi", &table, &notes).await;
    Ok(())
}

fn add_rows(table: &mut Table, engine: &Engine, times: &PiTimes) {
    let name = engine.name();
    let rows = [
        ("model turn, message → completed", &times.turn, "the same request posted to the fake", &times.direct),
        (
            "tool call, answer with the call → next model request",
            &times.tool_call,
            "`read` 1 KiB over the link to a daemon",
            &times.link_read,
        ),
    ];
    for (measure, values, reference, references) in rows {
        for (label, percentile) in [("p50", Samples::p50 as fn(&Samples) -> _), ("p99", Samples::p99)] {
            let (value, reference_value) = (percentile(values), percentile(references));
            table.push(
                format!("{name}: {measure}, {label} (n={})", values.len()),
                format_duration(value),
                format!("{reference}, {label}: {}", format_duration(reference_value)),
                format_overhead(value, reference_value),
            );
        }
    }
}

/// Where a turn's time goes by the fake's clock, and the tool's own time.
fn split_notes(engine: &Engine, times: &PiTimes) -> [String; 3] {
    let name = engine.name();
    let both = |samples: &Samples| format!("{} / {}", format_duration(samples.p50()), format_duration(samples.p99()));
    [
        format!(
            "{name}: a model turn by the fake's clock, p50 / p99: post → model request received {}; the fake's answer {}; answer handed out → completed on the stream {}",
            both(&times.before_model),
            both(&times.model),
            both(&times.after_model)
        ),
        format!(
            "{name}: the harness's own time in a model turn (the two outside the fake, summed per turn), p50 / p99: {}",
            both(&times.harness)
        ),
        format!("{name}: `read` 1 KiB called in this process, p50 / p99: {}", both(&times.in_process_read)),
    ]
}
