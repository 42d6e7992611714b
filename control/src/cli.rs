//! The `dari` command line: commands, flags and exit codes, following Dari's CLI.
//!
//! Output follows Dari's conventions: results on stdout (JSON where a program will read them),
//! progress and problems on stderr.

mod deploy;
mod project;
mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// What `dari` exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    /// The manifest or the project is invalid; the output says what to fix.
    Invalid = 1,
    /// The command could not run (bad usage, I/O, an unreachable server).
    Failure = 2,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> std::process::ExitCode {
        std::process::ExitCode::from(code as u8)
    }
}

#[derive(Debug, Parser)]
#[command(name = "dari", version, about = "Deploy agents and talk to them through durable sessions.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check dari.yml and the files it names, reporting every problem at once.
    Validate {
        /// The project directory, which holds dari.yml.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Package the project and publish it as a new version of its agent.
    Deploy(deploy::DeployArgs),
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { dir, json } => validate::run(&dir, json),
        Command::Deploy(args) => deploy::run(&args),
    }
}
