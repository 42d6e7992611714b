//! The server's configuration: flags, each with a `DARI_*` environment variable, read into a
//! [`ServerConfig`] before anything is opened or bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::models::ModelArgs;
use crate::bus::StreamLimits;
use crate::harness::custom_runtime::RuntimeLimits;
use crate::harness::pi::settings::PiSettings;
use crate::sandboxes::e2b::{self, E2bConfig};

pub const ENV_LISTEN: &str = "DARI_LISTEN";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8420";
pub const ENV_DATA_DIR: &str = "DARI_DATA_DIR";
pub const ENV_DATABASE_URL: &str = "DATABASE_URL";
pub const ENV_MASTER_KEY: &str = "DARI_MASTER_KEY";
pub const ENV_PUBLIC_URL: &str = "DARI_PUBLIC_URL";
pub const ENV_MAX_FILE_BYTES: &str = "DARI_MAX_FILE_BYTES";
pub const DEFAULT_MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
pub const ENV_STREAM_KEEPALIVE: &str = "DARI_STREAM_KEEPALIVE";
pub const DEFAULT_STREAM_KEEPALIVE: &str = "15s";
pub const ENV_STREAM_POLL_INTERVAL: &str = "DARI_STREAM_POLL_INTERVAL";
pub const DEFAULT_STREAM_POLL_INTERVAL: &str = "2s";
pub const ENV_MAX_STREAMS: &str = "DARI_MAX_STREAMS";
pub const DEFAULT_MAX_STREAMS: usize = 1000;
pub const ENV_MAX_STREAMS_PER_ORG: &str = "DARI_MAX_STREAMS_PER_ORG";
pub const DEFAULT_MAX_STREAMS_PER_ORG: usize = 100;
pub const ENV_TLS_CERT: &str = "DARI_TLS_CERT";
pub const ENV_TLS_KEY: &str = "DARI_TLS_KEY";
pub const ENV_SANDBOXD: &str = "DARI_SANDBOXD";
pub const ENV_WORKERS: &str = "DARI_WORKERS";
pub const DEFAULT_WORKERS: usize = 256;
pub const ENV_SANDBOX_IDLE_TIMEOUT: &str = "DARI_SANDBOX_IDLE_TIMEOUT";
pub const DEFAULT_SANDBOX_IDLE_TIMEOUT: &str = "15m";
pub const ENV_SANDBOX_LOST_GRACE: &str = "DARI_SANDBOX_LOST_GRACE";
pub const ENV_SANDBOX_ISOLATION: &str = "DARI_SANDBOX_ISOLATION";
pub const ENV_SANDBOX_ROOT: &str = "DARI_SANDBOX_ROOT";
pub const ENV_SANDBOX_PIDS_MAX: &str = "DARI_SANDBOX_PIDS_MAX";
pub const DEFAULT_SANDBOX_PIDS_MAX: u64 = 1024;
pub const ENV_SANDBOX_MEMORY_MB: &str = "DARI_SANDBOX_MEMORY_MB";
pub const DEFAULT_SANDBOX_MEMORY_MB: u64 = 2048;
pub const DEFAULT_SANDBOX_LOST_GRACE: &str = "30s";
pub const ENV_PREWARM_SANDBOXES: &str = "DARI_PREWARM_SANDBOXES";
pub const ENV_SKIP_SANDBOX_SETUP: &str = "DARI_SKIP_SANDBOX_SETUP";
pub const ENV_LINK_URL: &str = "DARI_LINK_URL";
pub const ENV_RUNTIME_START_TIMEOUT: &str = "DARI_RUNTIME_START_TIMEOUT";
pub const DEFAULT_RUNTIME_START_TIMEOUT: &str = "60s";
pub const ENV_RUNTIME_ADVANCE_TIMEOUT: &str = "DARI_RUNTIME_ADVANCE_TIMEOUT";
pub const DEFAULT_RUNTIME_ADVANCE_TIMEOUT: &str = "10m";
pub const ENV_SANDBOX_ENV: &str = "DARI_SANDBOX_ENV";
pub const ENV_SANDBOX_PROVIDER: &str = "DARI_SANDBOX_PROVIDER";
pub const ENV_E2B_API_URL: &str = "DARI_E2B_API_URL";
pub const ENV_E2B_SANDBOX_URL: &str = "DARI_E2B_SANDBOX_URL";
pub const ENV_E2B_TEMPLATE: &str = "DARI_E2B_TEMPLATE";
pub const ENV_E2B_TIMEOUT: &str = "DARI_E2B_TIMEOUT";
/// E2B's own name for its key, as its CLI and SDKs read it; never a flag (`ps` would show it).
pub const ENV_E2B_API_KEY: &str = "E2B_API_KEY";
pub const ENV_MESSAGE_LEASE: &str = "DARI_MESSAGE_LEASE";
pub const DEFAULT_MESSAGE_LEASE: &str = "30s";
/// Snapshots are bounded like bundles are (see dari-bundle's limits).
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 100 * 1024 * 1024;

/// `dari server` flags.
#[derive(Clone, Debug, Args)]
pub struct ServerArgs {
    /// The address to listen on.
    #[arg(long, env = ENV_LISTEN, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Where the server keeps its SQLite database, blobs and keys.
    #[arg(long, env = ENV_DATA_DIR)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL (`postgres://…`) or SQLite (`sqlite://PATH`); default: SQLite in the data
    /// directory.
    #[arg(long, env = ENV_DATABASE_URL, hide_env_values = true)]
    pub database_url: Option<String>,
    /// The key that seals credentials at rest: 32 bytes, base64. Default: `master.key` in the
    /// data directory, created on first start.
    #[arg(long, env = ENV_MASTER_KEY, hide_env_values = true)]
    pub master_key: Option<String>,
    /// The URL clients reach this server at, for URLs the API hands out; default: the request's
    /// Host header.
    #[arg(long, env = ENV_PUBLIC_URL)]
    pub public_url: Option<String>,
    /// The largest file `POST /v1/files` accepts, in bytes.
    #[arg(long, env = ENV_MAX_FILE_BYTES, default_value_t = DEFAULT_MAX_FILE_BYTES)]
    pub max_file_bytes: u64,
    /// How often an idle event stream sends a keep-alive comment (e.g. `15s`, `500ms`).
    #[arg(long, env = ENV_STREAM_KEEPALIVE, default_value = DEFAULT_STREAM_KEEPALIVE, value_parser = humantime::parse_duration)]
    pub stream_keepalive: Duration,
    /// How often an event stream re-reads the ledger without news: how soon it sees events
    /// another replica wrote.
    #[arg(long, env = ENV_STREAM_POLL_INTERVAL, default_value = DEFAULT_STREAM_POLL_INTERVAL, value_parser = humantime::parse_duration)]
    pub stream_poll_interval: Duration,
    /// The most event streams open at once on this server.
    #[arg(long, env = ENV_MAX_STREAMS, default_value_t = DEFAULT_MAX_STREAMS)]
    pub max_streams: usize,
    /// The most event streams open at once per organization.
    #[arg(long, env = ENV_MAX_STREAMS_PER_ORG, default_value_t = DEFAULT_MAX_STREAMS_PER_ORG)]
    pub max_streams_per_org: usize,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first); needs
    /// --tls-key.
    #[arg(long, env = ENV_TLS_CERT, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, RSA or EC).
    #[arg(long, env = ENV_TLS_KEY, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// The `sandboxd` binary that local sandboxes run; default: `sandboxd` beside the `dari`
    /// binary, else the one on PATH.
    #[arg(long, env = ENV_SANDBOXD, value_name = "PATH")]
    pub sandboxd: Option<PathBuf>,
    /// How many turns this server runs at once; 0 serves the API only and runs no message.
    #[arg(long, env = ENV_WORKERS, default_value_t = DEFAULT_WORKERS)]
    pub workers: usize,
    /// A sandbox unused this long, with no message queued or running, is archived and torn down.
    #[arg(long, env = ENV_SANDBOX_IDLE_TIMEOUT, default_value = DEFAULT_SANDBOX_IDLE_TIMEOUT, value_parser = humantime::parse_duration)]
    pub sandbox_idle_timeout: Duration,
    /// How long a sandbox's daemon may stay off the link before the sandbox counts as lost.
    #[arg(long, env = ENV_SANDBOX_LOST_GRACE, default_value = DEFAULT_SANDBOX_LOST_GRACE, value_parser = humantime::parse_duration)]
    pub sandbox_lost_grace: Duration,
    /// How local sandboxes are isolated: `jail` (namespaces, a read-only root, cgroup limits, no
    /// network unless `internet_access`; needs root or unprivileged user namespaces), `none`
    /// (plain child processes) or `auto` (the jail where this machine can make one, else none,
    /// with a warning).
    #[arg(long, env = ENV_SANDBOX_ISOLATION, value_enum, default_value_t = Isolation::Auto)]
    pub sandbox_isolation: Isolation,
    /// A root file system directory for jailed sandboxes (images/rootfs.sh builds one); default:
    /// the host's system directories, read-only.
    #[arg(long, env = ENV_SANDBOX_ROOT, value_name = "DIR")]
    pub sandbox_root: Option<PathBuf>,
    /// The most processes (and threads) a jailed sandbox may run at once.
    #[arg(long, env = ENV_SANDBOX_PIDS_MAX, default_value_t = DEFAULT_SANDBOX_PIDS_MAX)]
    pub sandbox_pids_max: u64,
    /// The memory limit (MiB) of a jailed sandbox whose manifest sets no
    /// `sandbox.resources.memory_mb`.
    #[arg(long, env = ENV_SANDBOX_MEMORY_MB, default_value_t = DEFAULT_SANDBOX_MEMORY_MB)]
    pub sandbox_memory_mb: u64,
    /// A variable (`KEY=VALUE`) every sandbox's processes get, the runtime server among
    /// them: proxies, endpoint overrides such as `ANTHROPIC_BASE_URL`. Repeatable; in
    /// DARI_SANDBOX_ENV, one `KEY=VALUE` per line (values such as NO_PROXY hold commas). The
    /// manifest's `sandbox.env` and `sandbox.secrets` override it.
    #[arg(long = "sandbox-env", env = ENV_SANDBOX_ENV, value_name = "KEY=VALUE", value_delimiter = '\n', hide_env_values = true)]
    pub sandbox_env: Vec<String>,
    /// How long a worker's claim on a running message lasts without renewal: how soon another
    /// worker resumes the turns of a server that died.
    #[arg(long, env = ENV_MESSAGE_LEASE, default_value = DEFAULT_MESSAGE_LEASE, value_parser = humantime::parse_duration)]
    pub message_lease: Duration,
    /// How long a custom runtime server may take to become healthy.
    #[arg(long, env = ENV_RUNTIME_START_TIMEOUT, default_value = DEFAULT_RUNTIME_START_TIMEOUT, value_parser = humantime::parse_duration)]
    pub runtime_start_timeout: Duration,
    /// How long a custom runtime server may take to answer one message.
    #[arg(long, env = ENV_RUNTIME_ADVANCE_TIMEOUT, default_value = DEFAULT_RUNTIME_ADVANCE_TIMEOUT, value_parser = humantime::parse_duration)]
    pub runtime_advance_timeout: Duration,
    /// Start a session's sandbox when the session is created, not at its first message.
    #[arg(long, env = ENV_PREWARM_SANDBOXES)]
    pub prewarm_sandboxes: bool,
    /// Never build versions' sandbox setup (`sandbox.packages.apt`, `sandbox.runtimes`,
    /// `sandbox.setup.script`): their sandboxes start on the bare base. For development, where the
    /// operator provides what the setup installs (e.g. on `PATH` through `--sandbox-env`).
    #[arg(long, env = ENV_SKIP_SANDBOX_SETUP)]
    pub skip_sandbox_setup: bool,
    /// The URL sandboxes dial to reach this server's link (`ws://host:port`); default: this
    /// server's listen port on 127.0.0.1.
    #[arg(long, env = ENV_LINK_URL)]
    pub link_url: Option<String>,
    /// Where sandboxes run: `local`, child processes of this server, or `e2b`, E2B's sandboxes
    /// (which need E2B_API_KEY, and a --link-url they can reach).
    #[arg(long, env = ENV_SANDBOX_PROVIDER, value_enum, default_value_t = ProviderKind::Local)]
    pub sandbox_provider: ProviderKind,
    /// E2B's API (a self-hosted E2B's, or a proxy).
    #[arg(long, env = ENV_E2B_API_URL, default_value = e2b::DEFAULT_API_URL)]
    pub e2b_api_url: String,
    /// Reach envd of every E2B sandbox at this URL, which routes on the `E2b-Sandbox-Id` header
    /// (E2B's `E2B_SANDBOX_URL`); default: each sandbox's own host.
    #[arg(long, env = ENV_E2B_SANDBOX_URL)]
    pub e2b_sandbox_url: Option<String>,
    /// The E2B template sandboxes are made from (`images/e2b/`).
    #[arg(long, env = ENV_E2B_TEMPLATE, default_value = e2b::DEFAULT_TEMPLATE)]
    pub e2b_template: String,
    /// How long an E2B sandbox lives before E2B kills it, busy or not (whole seconds; E2B's plans
    /// cap it).
    #[arg(long, env = ENV_E2B_TIMEOUT, default_value = e2b::DEFAULT_TIMEOUT, value_parser = humantime::parse_duration)]
    pub e2b_timeout: Duration,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// The `--sandbox-provider` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    Local,
    E2b,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub master_key: Option<String>,
    pub public_url: Option<String>,
    pub max_file_bytes: u64,
    pub max_snapshot_bytes: u64,
    pub stream_keepalive: Duration,
    pub stream_poll_interval: Duration,
    pub stream_limits: StreamLimits,
    /// HTTPS when set; plain HTTP otherwise.
    pub tls: Option<TlsConfig>,
    pub execution: ExecutionConfig,
}

/// How this server runs messages and their sandboxes.
#[derive(Clone, Debug)]
pub struct ExecutionConfig {
    pub sandboxd: PathBuf,
    pub workers: usize,
    pub idle_timeout: Duration,
    pub lost_grace: Duration,
    pub message_lease: Duration,
    pub runtime: RuntimeLimits,
    pub prewarm: bool,
    /// `None`: `ws://127.0.0.1:<port>` once the port is bound.
    pub link_url: Option<String>,
    /// `--sandbox-env`: variables every sandbox's daemon (and so each of its processes) gets.
    pub sandbox_env: BTreeMap<String, String>,
    /// How local sandboxes are isolated.
    pub jail: JailConfig,
    pub provider: ProviderConfig,
    /// `--skip-sandbox-setup`: versions' sandbox setup is never built.
    pub skip_sandbox_setup: bool,
    /// The managed pi harness: providers, keys, context windows, guards.
    pub pi: PiSettings,
}

/// Whether and how local sandboxes are jailed (`--sandbox-isolation`, `--sandbox-root`,
/// `--sandbox-pids-max`).
#[derive(Clone, Debug)]
pub struct JailConfig {
    pub isolation: Isolation,
    pub root: Option<PathBuf>,
    pub pids_max: u64,
    pub default_memory_mb: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    Auto,
    Jail,
    None,
}

/// Where sandboxes run.
#[derive(Clone, Debug)]
pub enum ProviderConfig {
    Local,
    E2b(E2bConfig),
}

/// Where the certificate chain and its key are, as given; read when the server starts.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl ServerConfig {
    /// Reads the flags and the keys in the environment; `default_data_dir` is used when none is
    /// given.
    pub fn from_args(args: ServerArgs, default_data_dir: PathBuf) -> anyhow::Result<ServerConfig> {
        ServerConfig::from_args_and_env(args, default_data_dir, |name| std::env::var(name).ok())
    }

    /// [`ServerConfig::from_args`] with the environment's keys read through `env`.
    pub fn from_args_and_env(
        args: ServerArgs,
        default_data_dir: PathBuf,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<ServerConfig> {
        if let Some(url) = &args.public_url {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "--public-url {url:?} must start with http:// or https://"
            );
        }
        anyhow::ensure!(args.max_file_bytes > 0, "--max-file-bytes must be at least 1");
        anyhow::ensure!(!args.stream_keepalive.is_zero(), "--stream-keepalive must be longer than zero");
        anyhow::ensure!(!args.stream_poll_interval.is_zero(), "--stream-poll-interval must be longer than zero");
        let sandbox_env = parse_sandbox_env(&args.sandbox_env)?;
        let provider = provider_config(&args, &sandbox_env, &env)?;
        let given = |path: Option<PathBuf>| path.filter(|path| !path.as_os_str().is_empty());
        let tls = match (given(args.tls_cert), given(args.tls_key)) {
            (Some(cert_path), Some(key_path)) => Some(TlsConfig { cert_path, key_path }),
            (None, None) => None,
            (Some(_), None) => anyhow::bail!(
                "--tls-cert ({ENV_TLS_CERT}) needs --tls-key ({ENV_TLS_KEY}): give both to serve HTTPS, or neither"
            ),
            (None, Some(_)) => anyhow::bail!(
                "--tls-key ({ENV_TLS_KEY}) needs --tls-cert ({ENV_TLS_CERT}): give both to serve HTTPS, or neither"
            ),
        };
        if let Some(url) = &args.link_url {
            anyhow::ensure!(
                url.starts_with("ws://") || url.starts_with("wss://") || url.starts_with("unix://"),
                "--link-url {url:?} must start with ws://, wss:// or unix://"
            );
        }
        anyhow::ensure!(!args.sandbox_lost_grace.is_zero(), "--sandbox-lost-grace must be longer than zero");
        anyhow::ensure!(!args.sandbox_idle_timeout.is_zero(), "--sandbox-idle-timeout must be longer than zero");
        anyhow::ensure!(!args.runtime_start_timeout.is_zero(), "--runtime-start-timeout must be longer than zero");
        anyhow::ensure!(!args.runtime_advance_timeout.is_zero(), "--runtime-advance-timeout must be longer than zero");
        anyhow::ensure!(
            args.message_lease >= Duration::from_millis(300),
            "--message-lease must be at least 300ms: a worker renews it every third of its length"
        );
        anyhow::ensure!(
            args.sandbox_pids_max >= 16,
            "--sandbox-pids-max must be at least 16: the daemon and a shell need a few"
        );
        anyhow::ensure!(args.sandbox_memory_mb >= 32, "--sandbox-memory-mb must be at least 32: the daemon needs some");
        let sandbox_root = given(args.sandbox_root);
        if let Some(root) = &sandbox_root {
            anyhow::ensure!(
                root.is_absolute() && root.is_dir(),
                "--sandbox-root {} must be an absolute path to a directory (build one with images/rootfs.sh)",
                root.display()
            );
            anyhow::ensure!(
                args.sandbox_isolation != Isolation::None,
                "--sandbox-root takes effect only in the jail; drop it or --sandbox-isolation none"
            );
        }
        let execution = ExecutionConfig {
            sandboxd: given(args.sandboxd).unwrap_or_else(default_sandboxd),
            workers: args.workers,
            idle_timeout: args.sandbox_idle_timeout,
            lost_grace: args.sandbox_lost_grace,
            message_lease: args.message_lease,
            runtime: RuntimeLimits {
                start_timeout: args.runtime_start_timeout,
                advance_timeout: args.runtime_advance_timeout,
            },
            prewarm: args.prewarm_sandboxes,
            link_url: args.link_url.map(|url| url.trim_end_matches('/').to_owned()),
            sandbox_env,
            jail: JailConfig {
                isolation: args.sandbox_isolation,
                root: sandbox_root,
                pids_max: args.sandbox_pids_max,
                default_memory_mb: args.sandbox_memory_mb,
            },
            skip_sandbox_setup: args.skip_sandbox_setup,
            provider,
            pi: args.models.settings(&env)?,
        };
        Ok(ServerConfig {
            execution,
            listen: args.listen,
            data_dir: args.data_dir.unwrap_or(default_data_dir),
            database_url: args.database_url.filter(|url| !url.is_empty()),
            master_key: args.master_key.filter(|key| !key.is_empty()),
            public_url: args.public_url.map(|url| url.trim_end_matches('/').to_owned()),
            max_file_bytes: args.max_file_bytes,
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
            stream_keepalive: args.stream_keepalive,
            stream_poll_interval: args.stream_poll_interval,
            stream_limits: StreamLimits {
                max_streams: args.max_streams,
                max_streams_per_org: args.max_streams_per_org,
            },
            tls,
        })
    }

    /// The database to open: `DATABASE_URL`, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("dari.db").display()),
        }
    }
}

/// Reads `--sandbox-env` entries: `KEY=VALUE`, a variable name for `KEY`, not one of the daemon's
/// own `SANDBOXD_*`. Blank entries (an empty line in DARI_SANDBOX_ENV) are skipped; a later entry
/// of a name replaces an earlier one. Errors name the key, never the value (it may hold a
/// password, as a proxy's URL can).
fn parse_sandbox_env(entries: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for entry in entries.iter().map(|entry| entry.trim_end_matches('\r')).filter(|entry| !entry.trim().is_empty()) {
        let Some((key, value)) = entry.split_once('=') else {
            anyhow::bail!("--sandbox-env ({ENV_SANDBOX_ENV}) takes KEY=VALUE; one entry has no `=`");
        };
        let key = key.trim();
        let valid = key.bytes().next().is_some_and(|byte| byte.is_ascii_alphabetic() || byte == b'_')
            && key.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
        anyhow::ensure!(valid, "--sandbox-env ({ENV_SANDBOX_ENV}): {key:?} is not an environment variable name");
        anyhow::ensure!(
            !key.starts_with("SANDBOXD_"),
            "--sandbox-env ({ENV_SANDBOX_ENV}): {key} is the sandbox daemon's own configuration, which the server sets"
        );
        env.insert(key.to_owned(), value.to_owned());
    }
    Ok(env)
}

/// The provider's settings. E2B's sandboxes run elsewhere, so they must be told a link URL they
/// can reach: this server's default, 127.0.0.1, is not one.
fn provider_config(
    args: &ServerArgs,
    sandbox_env: &BTreeMap<String, String>,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<ProviderConfig> {
    if args.sandbox_provider == ProviderKind::Local {
        return Ok(ProviderConfig::Local);
    }
    let api_key = env(ENV_E2B_API_KEY).filter(|key| !key.trim().is_empty()).ok_or_else(|| {
        anyhow::anyhow!(
            "--sandbox-provider e2b needs the E2B API key in {ENV_E2B_API_KEY} (https://e2b.dev/dashboard?tab=keys)"
        )
    })?;
    match args.link_url.as_deref() {
        Some(url) if url.starts_with("ws://") || url.starts_with("wss://") => {}
        Some(url) => anyhow::bail!(
            "--sandbox-provider e2b needs a --link-url ({ENV_LINK_URL}) that E2B's sandboxes can dial over the internet: ws:// or wss://, not {url:?}"
        ),
        None => anyhow::bail!(
            "--sandbox-provider e2b needs --link-url ({ENV_LINK_URL}): the ws:// or wss:// URL at which E2B's sandboxes reach this server over the internet"
        ),
    }
    for (flag, url) in
        [("--e2b-api-url", Some(&args.e2b_api_url)), ("--e2b-sandbox-url", args.e2b_sandbox_url.as_ref())]
    {
        if let Some(url) = url {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "{flag} {url:?} must start with http:// or https://"
            );
        }
    }
    anyhow::ensure!(!args.e2b_template.trim().is_empty(), "--e2b-template must name a template");
    anyhow::ensure!(args.e2b_timeout >= Duration::from_secs(1), "--e2b-timeout must be at least 1s");
    Ok(ProviderConfig::E2b(E2bConfig {
        api_url: args.e2b_api_url.trim_end_matches('/').to_owned(),
        sandbox_url: args.e2b_sandbox_url.as_ref().map(|url| url.trim_end_matches('/').to_owned()),
        template: args.e2b_template.clone(),
        timeout: args.e2b_timeout,
        sandbox_env: sandbox_env.clone(),
        api_key,
    }))
}

/// `sandboxd` beside the running `dari` binary, else the name alone (found on PATH).
fn default_sandboxd() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("sandboxd")))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("sandboxd"))
}

#[cfg(test)]
mod tests;
