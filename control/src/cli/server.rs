//! `dari server` and `dari dev`: run the control plane.
//!
//! `dari dev` is `dari server` for one person on one machine: it listens on 127.0.0.1, keeps its
//! data in a local directory with embedded SQLite, and saves the bootstrap key in the CLI's state
//! so that `dari deploy` and the other commands just work.

use std::path::PathBuf;

use anyhow::Context;

use super::ExitCode;
use super::client::DEFAULT_API_URL;
use super::state::{CliState, ServerProfile};
use crate::server::{BOOTSTRAP_KEY_FILE, Server, ServerArgs, ServerConfig, shutdown_signal};

pub(crate) async fn run_server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let config = ServerConfig::from_args(args, default_data_dir("server"))?;
    let server = Server::start(&config).await?;
    if server.bootstrap.is_some() {
        eprintln!(
            "created organization `default`; its admin API key is in {}",
            config.data_dir.join(BOOTSTRAP_KEY_FILE).display()
        );
    }
    announce(&server);
    server.run(shutdown_signal()).await?;
    Ok(ExitCode::Success)
}

pub(crate) async fn run_dev(mut args: ServerArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "dari dev listens on a loopback address only; use `dari server` to listen on {}",
        args.listen
    );
    if args.database_url.as_deref().is_some_and(|url| !url.starts_with("sqlite:")) {
        args.database_url = None;
    }
    let config = ServerConfig::from_args(args, default_data_dir("dev"))?;
    let server = Server::start(&config).await?;
    let api_url = server.url();
    let key_file = config.data_dir.join(BOOTSTRAP_KEY_FILE);
    let saved = match &server.bootstrap {
        Some(bootstrap) => Some(save_profile(&api_url, &bootstrap.api_key, Some(bootstrap.org_id.clone()))?),
        None => adopt_bootstrap_key(&api_url, &key_file)?,
    };
    announce(&server);
    eprintln!("dari dev: control plane at {api_url}, data in {}", config.data_dir.display());
    if let Some(path) = saved {
        eprintln!("saved an API key for {api_url} in {}", path.display());
    }
    eprintln!("next steps, in another terminal:");
    eprintln!("  dari deploy examples/echo-runtime      # publish an agent");
    eprintln!("  dari agent list                        # see it");
    eprintln!("  dari session create --agent echo-runtime");
    eprintln!("stop with Ctrl-C");
    server.run(shutdown_signal()).await?;
    Ok(ExitCode::Success)
}

/// The line scripts and tests wait for: the URL the server answers on, on stdout.
fn announce(server: &Server) {
    println!("listening on {}", server.url());
}

/// Where a server keeps its data by default: `$XDG_DATA_HOME/dari/NAME`, else
/// `~/.local/share/dari/NAME`, else `./.dari-NAME`.
fn default_data_dir(name: &str) -> PathBuf {
    let from_env = |key: &str| std::env::var_os(key).filter(|value| !value.is_empty()).map(PathBuf::from);
    from_env("XDG_DATA_HOME")
        .map(|dir| dir.join("dari"))
        .or_else(|| from_env("HOME").map(|home| home.join(".local").join("share").join("dari")))
        .map_or_else(|| PathBuf::from(format!(".dari-{name}")), |dir| dir.join(name))
}

fn save_profile(api_url: &str, api_key: &str, org_id: Option<String>) -> anyhow::Result<PathBuf> {
    let mut state = CliState::load()?;
    state.servers.insert(api_url.to_owned(), ServerProfile { api_key: api_key.to_owned(), org_id });
    if state.api_url.is_none() && api_url != DEFAULT_API_URL {
        state.api_url = Some(api_url.to_owned());
    }
    state.save()
}

/// On later starts: when the CLI has no key for this server (its state was removed, or the
/// server moved port), the bootstrap key file supplies one.
fn adopt_bootstrap_key(api_url: &str, key_file: &std::path::Path) -> anyhow::Result<Option<PathBuf>> {
    if CliState::load()?.servers.contains_key(api_url) {
        return Ok(None);
    }
    match std::fs::read_to_string(key_file) {
        Ok(key) => Ok(Some(save_profile(api_url, key.trim(), None)?)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("read {}", key_file.display())),
    }
}
