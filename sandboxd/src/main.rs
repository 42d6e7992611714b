//! `sandboxd`: the daemon inside every sandbox.
//!
//! It grows into the daemon that dials the control plane, runs the built-in tools and supervises
//! the agent's runtime server. Today it has its local face for people and tests:
//!
//! - `sandboxd bundle extract --archive FILE --into DIR [--sha256 HEX] [--read-only]` unpacks a
//!   source bundle the way every session will: it checks the archive's sha256, refuses every
//!   escape (`..`, absolute paths, links, devices, oversized entries) and writes nothing unless
//!   the whole archive is sound.
//!
//! Exit codes: 0 success, 1 the input was refused (the message says why), 2 bad usage.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dari_bundle::{BundleLimits, ExtractOptions, extract};

#[derive(Debug, Parser)]
#[command(name = "sandboxd", version, about = "The daemon inside every Dari sandbox.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Source bundle operations.
    #[command(subcommand)]
    Bundle(BundleCommand),
}

#[derive(Debug, Subcommand)]
enum BundleCommand {
    /// Unpack a source bundle (tar.gz) into a new directory, refusing anything unsafe.
    Extract {
        /// The archive to unpack.
        #[arg(long)]
        archive: PathBuf,
        /// The directory to create; it must not exist yet.
        #[arg(long)]
        into: PathBuf,
        /// The archive's expected sha256, in hex.
        #[arg(long)]
        sha256: Option<String>,
        /// Leave files and directories without write permission.
        #[arg(long)]
        read_only: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bundle(BundleCommand::Extract { archive, into, sha256, read_only }) => {
            extract_bundle(&archive, &into, sha256.as_deref(), read_only)
        }
    }
}

fn extract_bundle(archive: &Path, into: &Path, sha256: Option<&str>, read_only: bool) -> ExitCode {
    let file = match std::fs::File::open(archive) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: open archive {}: {error}", archive.display());
            return ExitCode::from(2);
        }
    };
    let options = ExtractOptions { limits: &BundleLimits::DEFAULT, expected_sha256: sha256, read_only };
    match extract(std::io::BufReader::new(file), into, &options) {
        Ok(bundle) => {
            let files: Vec<_> = bundle.files.iter().map(|file| file.path.as_str()).collect();
            let report = serde_json::json!({"root": bundle.root, "sha256": bundle.sha256, "files": files});
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}
