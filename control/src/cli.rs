//! The `dari` command line: commands, flags and exit codes, following Dari's CLI.
//!
//! Output follows Dari's conventions: results on stdout (JSON where a program will read them),
//! progress and problems on stderr. Commands that talk to a server use the public HTTP API only.

mod agent;
mod api_keys;
mod client;
mod credentials;
mod deploy;
mod files;
mod follow;
mod project;
mod resolve;
mod server;
mod session;
mod state;
mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use client::{ApiArgs, ApiClient, ApiFailure, DEFAULT_API_URL};
pub use state::{CliState, ServerProfile};

use crate::server::ServerArgs;

/// What `dari` exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    /// The manifest or the project is invalid; the output says what to fix.
    Invalid = 1,
    /// The command could not run (bad usage, I/O, an unreachable server, a refused request).
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
    #[command(flatten)]
    pub api: ApiArgs,
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
    /// Run the control plane.
    Server(ServerArgs),
    /// Run the control plane for local development: 127.0.0.1, SQLite, and a saved API key.
    Dev(ServerArgs),
    /// List agents, browse their versions and bundles, delete them.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Manage the organization's API keys.
    #[command(name = "api-keys", subcommand)]
    ApiKeys(api_keys::ApiKeysCommand),
    /// Manage the organization's stored credentials.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// Create sessions of an agent, send them messages, read their events.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// Upload files for `file` and `image` content blocks.
    #[command(subcommand)]
    Files(files::FilesCommand),
}

impl Command {
    /// True for the commands that run a server, whose logs go to stderr.
    pub fn runs_server(&self) -> bool {
        matches!(self, Command::Server(_) | Command::Dev(_))
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { dir, json } => validate::run(&dir, json),
        Command::Deploy(args) => deploy::run(&args, &cli.api).await,
        Command::Server(args) => server::run_server(args).await,
        Command::Dev(args) => server::run_dev(args).await,
        Command::Agent(command) => agent::run(command, &cli.api).await,
        Command::ApiKeys(command) => api_keys::run(command, &cli.api).await,
        Command::Credentials(command) => credentials::run(command, &cli.api).await,
        Command::Session(command) => session::run(command, &cli.api).await,
        Command::Files(command) => files::run(command, &cli.api).await,
    }
}
