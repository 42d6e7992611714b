//! `sandboxd`: the daemon inside every sandbox.
//!
//! Lifecycle of the daemon (`sandboxd run`), in order:
//! 1. read its configuration from the environment (control URL, sandbox id, token, workspace), and
//!    make the workspace its working directory;
//! 2. connect to control over one WebSocket and say hello (versions, capabilities);
//! 3. on request: materialize the source bundle and start the supervised runtime server;
//! 4. serve tool calls, exec, PTY and file watches, streaming results through an acknowledged outbox;
//! 5. on SIGTERM: finish or cancel running work, flush the outbox, kill children, exit.
//!
//! Its local face, for people and tests:
//! - `sandboxd tool NAME 'JSON' --workspace DIR` runs one built-in tool and prints its result as
//!   JSON (`{content, is_error, details}`);
//! - `sandboxd jail [--sandbox-id ID --workspace DIR …] [-- PROGRAM…]` runs `sandboxd run` (or the
//!   program) in the local jail (see `jail.rs`);
//! - `sandboxd bundle extract --archive FILE --into DIR [--sha256 HEX] [--read-only]` unpacks a
//!   source bundle, refusing every escape and writing nothing unless the whole archive is sound.
//!
//! Exit codes: 0 success (for `tool`, also when the tool itself failed: see `is_error`), 1 the
//! input was refused, 2 bad usage or an unusable environment, 3 control refused the sandbox
//! token (the sandbox is gone).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dari_bundle::{BundleLimits, ExtractOptions, extract};
use sandboxd::bundle::ControlEndpoint;
use sandboxd::config::{self, DaemonConfig, Environment};
use sandboxd::jail::{self, JailSpec};
use sandboxd::link::{Daemon, DaemonExit, Services};
use sandboxd::tools::{BashConfig, FileLocks, ToolContext, Workspace, run_tool};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "sandboxd", version, about = "The daemon inside every Dari sandbox.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: dial control and serve it until shut down. Configured by SANDBOXD_*
    /// environment variables.
    Run,
    /// Run one built-in tool and print its result as JSON.
    Tool {
        /// read, bash, edit, write, grep, find or ls.
        name: String,
        /// The tool's arguments as a JSON object.
        arguments: String,
        /// The workspace the tool is confined to.
        #[arg(long, default_value = "/workspace")]
        workspace: PathBuf,
    },
    /// Source bundle operations.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Run a program (by default `sandboxd run`) in a new jail: namespaces, a read-only root, cgroup
    /// limits and no network unless --host-network. Needs root or unprivileged user namespaces.
    Jail(JailSpec),
    /// The jail's first process; started by `jail`, never by hand.
    #[command(hide = true)]
    JailInit(JailSpec),
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
        Command::Run => run_daemon(),
        Command::Tool { name, arguments, workspace } => run_one_tool(&name, &arguments, &workspace),
        Command::Bundle(BundleCommand::Extract { archive, into, sha256, read_only }) => {
            extract_bundle(&archive, &into, sha256.as_deref(), read_only)
        }
        // The init is started with the launcher's own arguments.
        Command::Jail(spec) => jail::launch(&spec, std::env::args_os().skip(2).collect()),
        Command::JailInit(spec) => jail::init(&spec),
    }
}

/// Exit code when control refused the sandbox token: the sandbox is gone.
const EXIT_REFUSED: u8 = 3;

fn run_daemon() -> ExitCode {
    ensure_shell_variable();
    // The sandbox's own processes run as the same user: none may trace the daemon or read its
    // environment, which holds the sandbox token.
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("error: make the daemon non-dumpable: {error}");
        return ExitCode::from(2);
    }
    init_logging();
    let config = match DaemonConfig::from_strings(&Environment) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let workspace = match enter_workspace(&config.workspace) {
        Ok(workspace) => workspace,
        Err(exit) => return exit,
    };
    let control = ControlEndpoint { target: config.control_url.http_target(), token: config.token.clone() };
    let tools =
        ToolContext { bash: BashConfig::for_workspace(workspace.root()), workspace, locks: FileLocks::default() };
    let (events_tx, events_rx) = tokio::sync::mpsc::channel(1024);
    let services = Services::new(tools, control, events_tx.clone());
    // One thread runs the link, the core loop and every request's task: handing a request from
    // one to the next is then a task switch, not a wake-up of another thread (a `read` round trip
    // took about 14 context switches on two workers, and one now). Work that blocks or burns
    // CPU (file tools beyond a small read, grep, find, bundles) goes to tokio's blocking pool,
    // and terminals have their own threads, so nothing long runs here.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let exit = runtime.block_on(async move {
        tokio::spawn(sandboxd::memory::watch(events_tx));
        Daemon::new(config, services, events_rx).run(shutdown_signal()).await
    });
    match exit {
        DaemonExit::Shutdown => ExitCode::SUCCESS,
        DaemonExit::Refused(_) => ExitCode::from(EXIT_REFUSED),
    }
}

/// Sets `SHELL` to the default shell when the daemon was started without it. portable-pty's
/// `CommandBuilder` otherwise asks `getpwuid` for the login shell each time a terminal opens, and
/// in a static binary glibc then loads NSS modules at run time: for a uid that `/etc/passwd`
/// does not list, with `passwd: files systemd` in `/etc/nsswitch.conf`, that crashes the process.
/// Commands started from then on see this `SHELL` too, the shell they are run with anyway.
#[allow(
    unsafe_code,
    clippy::disallowed_methods,
    reason = "the one change to the daemon's environment, before any thread"
)]
fn ensure_shell_variable() {
    if std::env::var_os("SHELL").is_none() {
        // SAFETY: this runs first in `run_daemon`, before logging, the runtime or any other thread
        // exists, so nothing can read or write the environment at the same time.
        unsafe { std::env::set_var("SHELL", sandboxd::process::default_shell()) };
    }
}

/// Opens the workspace and makes it the process's working directory: children that start in the
/// workspace root then need no `current_dir`, which lets std start them with `posix_spawn`
/// instead of fork + exec (see `ChildSpec::spawn`). Exit code 2 when either fails.
fn enter_workspace(root: &Path) -> Result<Workspace, ExitCode> {
    let opened = Workspace::new(root).and_then(|workspace| {
        std::env::set_current_dir(workspace.root())?;
        Ok(workspace)
    });
    opened.map_err(|error| {
        eprintln!("error: open workspace {}: {error}", root.display());
        ExitCode::from(2)
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

fn init_logging() {
    let filter = std::env::var(config::ENV_LOG).unwrap_or_else(|_| config::DEFAULT_LOG_FILTER.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config::DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var(config::ENV_LOG_FORMAT).is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run_one_tool(name: &str, arguments: &str, workspace: &Path) -> ExitCode {
    let arguments: serde_json::Value = match serde_json::from_str(arguments) {
        Ok(arguments) => arguments,
        Err(error) => {
            eprintln!("error: the arguments are not JSON: {error}");
            return ExitCode::from(2);
        }
    };
    let workspace = match enter_workspace(workspace) {
        Ok(workspace) => workspace,
        Err(exit) => return exit,
    };
    let context =
        ToolContext { bash: BashConfig::for_workspace(workspace.root()), workspace, locks: FileLocks::default() };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let cancel = CancellationToken::new();
    let result = runtime.block_on(run_tool(&context, name, arguments, cancel, None));
    match serde_json::to_string(&result) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: render the result: {error}");
            ExitCode::from(2)
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
