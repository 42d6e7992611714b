//! The `dari` binary: parses the command line, sets up logging for the server commands, runs the
//! command, and maps its outcome to an exit code (see [`dari_control::cli::ExitCode`]).

use std::process::ExitCode;

use clap::Parser;
use dari_control::cli::{self, Cli};

/// The log filter when `DARI_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "warn,dari_control=info";
const ENV_LOG: &str = "DARI_LOG";
/// `json` for one JSON object per line; anything else for text.
const ENV_LOG_FORMAT: &str = "DARI_LOG_FORMAT";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.runs_server() {
        init_logging();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return cli::ExitCode::Failure.into();
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code.into(),
        Err(error) => {
            eprintln!("error: {error:#}");
            cli::ExitCode::Failure.into()
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var(ENV_LOG_FORMAT).is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
