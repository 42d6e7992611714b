//! What the benchmarks of a running server share (`bench_sessions`, `bench_pi`): `dari` built in
//! the benchmark's own profile and the static `sandboxd` as it ships, the engines to measure, and
//! the server's log, kept when the benchmark is given `DARI_LOG`.

use std::path::PathBuf;

use anyhow::Context;

use super::{BuildDirs, RunInfo, Table, parse_count};
use crate::binaries::{SANDBOXD_PROFILE, build_dari, build_static_sandboxd};
use crate::control::{ControlServer, ControlServerBuilder, ENV_TEST_POSTGRES_URL, Engine};
use crate::workspace_root;

/// `--workers` of a benchmarked server: more than any benchmark runs messages at once.
const WORKERS: usize = 256;

/// The binaries a server benchmark runs and the engines it measures them on.
#[derive(Debug)]
pub struct ServerBench {
    pub dirs: BuildDirs,
    pub dari: PathBuf,
    pub sandboxd: PathBuf,
    /// SQLite, then PostgreSQL if configured.
    pub engines: Vec<Engine>,
    /// The servers' `DARI_LOG`: `warn`, or the benchmark's own `DARI_LOG`.
    log_filter: String,
    /// Whether the servers' logs are kept, under `<target>/bench-data/`: when the benchmark was
    /// given `DARI_LOG`, to see where the time goes (`DARI_LOG=warn,sqlx=debug,dari_control=debug`).
    keep_logs: bool,
}

/// Reads a server benchmark's arguments: `--postgres URL` into `postgres`, and `FLAG N` into the
/// slot of each flag of `counts`. `Ok(false)` when help was asked for, an error for bad usage.
pub fn parse_args(
    mut args: impl Iterator<Item = String>,
    counts: &mut [(&str, &mut usize)],
    postgres: &mut Option<String>,
) -> Result<bool, String> {
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(false),
            "--postgres" => *postgres = Some(args.next().ok_or("--postgres needs a URL")?),
            _ => {
                let (_, slot) = counts
                    .iter_mut()
                    .find(|(name, _)| *name == flag)
                    .ok_or_else(|| format!("unknown argument {flag:?}"))?;
                let value = args.next().ok_or_else(|| format!("{flag} needs a number"))?;
                **slot = parse_count(&flag, &value)?;
            }
        }
    }
    Ok(true)
}

/// The PostgreSQL server to measure unless `--postgres` names another: `DARI_TEST_POSTGRES_URL`.
pub fn postgres_from_env() -> Option<String> {
    std::env::var(ENV_TEST_POSTGRES_URL).ok().filter(|url| !url.is_empty())
}

impl ServerBench {
    /// Builds `dari` in this benchmark's profile and `sandboxd` static in its own, and lists
    /// the engines: SQLite, and PostgreSQL when `postgres` names a server on which the benchmark
    /// may create databases.
    pub fn prepare(postgres: Option<&str>) -> anyhow::Result<ServerBench> {
        let dirs = BuildDirs::of_current_exe()?;
        // Under `cargo run --release` this is the release profile, as a deployment runs.
        let profile = if dirs.profile == "debug" { "dev" } else { dirs.profile.as_str() };
        if profile != "release" {
            eprintln!("warning: built in the {profile} profile; run with --release for figures that mean anything");
        }
        eprintln!("building dari ({profile} profile) and sandboxd (static, {SANDBOXD_PROFILE} profile)");
        let dari = build_dari(&dirs.target_dir, profile)?;
        let sandboxd = build_static_sandboxd(&dirs.target_dir, SANDBOXD_PROFILE)?;
        let mut engines = vec![Engine::Sqlite];
        match postgres {
            Some(url) => engines.push(Engine::Postgres(url.to_owned())),
            None => {
                eprintln!("PostgreSQL not configured (--postgres or {ENV_TEST_POSTGRES_URL}): measuring SQLite only")
            }
        }
        let kept_log = std::env::var("DARI_LOG").ok().filter(|filter| !filter.is_empty());
        let keep_logs = kept_log.is_some();
        let log_filter = kept_log.unwrap_or_else(|| "warn".to_owned());
        Ok(ServerBench { dirs, dari, sandboxd, engines, log_filter, keep_logs })
    }

    /// A server of these binaries on `engine` that prewarms a sandbox for each new session.
    pub fn server(&self, engine: &Engine) -> ControlServerBuilder {
        ControlServer::builder(engine.clone())
            .program(&self.dari)
            .sandboxd(&self.sandboxd)
            .workers(WORKERS)
            .args(["--prewarm-sandboxes"])
            .log_filter(&self.log_filter)
    }

    /// The lines to print under the table about `control`'s run of the benchmark `bench`: where
    /// its log was kept, and how many warnings it logged.
    pub fn notes(&self, bench: &str, control: &ControlServer) -> anyhow::Result<Vec<String>> {
        let name = control.engine.name();
        let mut notes = Vec::new();
        if self.keep_logs {
            let data_dir = self.dirs.target_dir.join("bench-data");
            let path = data_dir.join(format!("{bench}-{name}.log"));
            std::fs::create_dir_all(&data_dir).context("create bench-data")?;
            std::fs::write(&path, control.log()).with_context(|| format!("write {}", path.display()))?;
            notes.push(format!("{name}: the server's log (DARI_LOG={}) is in {}", self.log_filter, path.display()));
        }
        let warnings = control.unexpected_warnings(&[]);
        if let Some(first) = warnings.first() {
            notes.push(format!("{name}: the server logged {} warnings, the first: {first}", warnings.len()));
        }
        Ok(notes)
    }

    /// Prints the report of the benchmark `bench`: where and when it ran, the table, and `notes`
    /// (what the measures are, then what the servers said) in a text block beneath it.
    pub async fn print_report(&self, bench: &str, table: &Table, notes: &[String]) {
        let info = RunInfo::collect(&workspace_root()).await;
        println!("{bench} on {} ({} CPUs, {}), commit {}", info.date, info.nproc, info.cpu, info.commit);
        println!("daemon: {} ({SANDBOXD_PROFILE} profile)\n", self.sandboxd.display());
        print!("{}", table.render());
        println!();
        println!("```text");
        for note in notes {
            println!("{note}");
        }
        println!("```");
    }
}
