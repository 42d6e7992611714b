//! The `dari` binary: parses the command line, runs the command, and maps its outcome to an exit
//! code (see [`dari_control::cli::ExitCode`]).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = dari_control::cli::Cli::parse();
    match dari_control::cli::run(cli) {
        Ok(code) => code.into(),
        Err(error) => {
            eprintln!("error: {error:#}");
            dari_control::cli::ExitCode::Failure.into()
        }
    }
}
