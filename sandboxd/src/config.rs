//! The daemon's configuration, read from `SANDBOXD_*` environment variables through the small
//! [`Strings`] trait so that tests can pass a map.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// The control plane's link base URL: `ws://host:port`, `wss://host:port`, or `unix:///path`.
pub const ENV_CONTROL_URL: &str = "SANDBOXD_CONTROL_URL";
pub const ENV_SANDBOX_ID: &str = "SANDBOXD_SANDBOX_ID";
/// The sandbox token, sent as `Authorization: Bearer <token>`.
pub const ENV_TOKEN: &str = "SANDBOXD_TOKEN";
pub const ENV_WORKSPACE: &str = "SANDBOXD_WORKSPACE";
pub const DEFAULT_WORKSPACE: &str = "/workspace";
/// How often the daemon pings control; a link silent for three intervals is dead.
pub const ENV_PING_INTERVAL_MS: &str = "SANDBOXD_PING_INTERVAL_MS";
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);
/// The longest wait between reconnection attempts.
pub const ENV_MAX_BACKOFF_MS: &str = "SANDBOXD_MAX_BACKOFF_MS";
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The log filter, as `RUST_LOG` would take it.
pub const ENV_LOG: &str = "SANDBOXD_LOG";
pub const DEFAULT_LOG_FILTER: &str = "warn,sandboxd=info";
/// `text` (default) or `json`.
pub const ENV_LOG_FORMAT: &str = "SANDBOXD_LOG_FORMAT";
/// The memory cgroup's event counter (a file with an `oom_kill N` line), set by the jail: how the
/// daemon tells an out-of-memory kill from any other SIGKILL.
pub const ENV_MEMORY_EVENTS: &str = "SANDBOXD_MEMORY_EVENTS";
/// The sandbox's memory limit in MiB, set by the jail, for the messages of out-of-memory kills.
pub const ENV_MEMORY_LIMIT_MB: &str = "SANDBOXD_MEMORY_LIMIT_MB";

/// Where configuration strings come from: the process environment, or a map in tests.
pub trait Strings {
    fn get(&self, key: &str) -> Result<Option<String>, ConfigError>;
}

/// The process environment.
pub struct Environment;

impl Strings for Environment {
    fn get(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match std::env::var(key) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::NotUnicode { key: key.to_owned() }),
        }
    }
}

impl Strings for HashMap<String, String> {
    fn get(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(HashMap::get(self, key).cloned())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key} is not set; the sandbox provider must set it")]
    Missing { key: String },
    #[error("{key} is not valid UTF-8")]
    NotUnicode { key: String },
    #[error("{key}={value:?} is invalid: {reason}")]
    Invalid { key: String, value: String, reason: String },
}

/// The validated configuration of `sandboxd run`.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub control_url: ControlUrl,
    pub sandbox_id: String,
    pub token: String,
    pub workspace: PathBuf,
    pub ping_interval: Duration,
    pub max_backoff: Duration,
}

/// Where control listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlUrl {
    /// `ws://` or `wss://` with host and port, no path.
    WebSocket(String),
    /// A Unix socket path, for sandboxes without a network.
    Unix(PathBuf),
}

impl ControlUrl {
    /// Where control's HTTP endpoints are, for downloads: the same host and port, or socket.
    pub fn http_target(&self) -> crate::http::Target {
        match self {
            ControlUrl::WebSocket(url) => {
                let host = url.trim_start_matches("wss://").trim_start_matches("ws://");
                crate::http::Target::Tcp(host.to_owned())
            }
            ControlUrl::Unix(path) => crate::http::Target::Unix(path.clone()),
        }
    }
}

impl DaemonConfig {
    pub fn from_strings(strings: &dyn Strings) -> Result<DaemonConfig, ConfigError> {
        let required = |key: &str| {
            strings
                .get(key)?
                .filter(|value| !value.is_empty())
                .ok_or_else(|| ConfigError::Missing { key: key.to_owned() })
        };
        let control_url = parse_control_url(&required(ENV_CONTROL_URL)?)?;
        let sandbox_id = required(ENV_SANDBOX_ID)?;
        if !sandbox_id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-') {
            return Err(invalid(ENV_SANDBOX_ID, &sandbox_id, "use letters, digits, _ and -"));
        }
        let token = required(ENV_TOKEN)?;
        let workspace = PathBuf::from(strings.get(ENV_WORKSPACE)?.unwrap_or_else(|| DEFAULT_WORKSPACE.to_owned()));
        let ping_interval = duration_ms(strings, ENV_PING_INTERVAL_MS, DEFAULT_PING_INTERVAL)?;
        let max_backoff = duration_ms(strings, ENV_MAX_BACKOFF_MS, DEFAULT_MAX_BACKOFF)?;
        Ok(DaemonConfig { control_url, sandbox_id, token, workspace, ping_interval, max_backoff })
    }
}

fn parse_control_url(value: &str) -> Result<ControlUrl, ConfigError> {
    if let Some(path) = value.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(invalid(ENV_CONTROL_URL, value, "a unix:// URL takes an absolute socket path"));
        }
        return Ok(ControlUrl::Unix(PathBuf::from(path)));
    }
    let Some(rest) = value.strip_prefix("ws://").or_else(|| value.strip_prefix("wss://")) else {
        return Err(invalid(ENV_CONTROL_URL, value, "use ws://host:port, wss://host:port or unix:///path"));
    };
    if rest.is_empty() || rest.trim_end_matches('/').contains('/') {
        return Err(invalid(ENV_CONTROL_URL, value, "give only the scheme, host and port; the daemon adds the path"));
    }
    Ok(ControlUrl::WebSocket(value.trim_end_matches('/').to_owned()))
}

fn duration_ms(strings: &dyn Strings, key: &str, default: Duration) -> Result<Duration, ConfigError> {
    match strings.get(key)? {
        None => Ok(default),
        Some(value) => match value.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(invalid(key, &value, "expected a positive number of milliseconds")),
        },
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), value: value.to_owned(), reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn reads_a_complete_configuration() {
        let config = DaemonConfig::from_strings(&strings(&[
            (ENV_CONTROL_URL, "ws://127.0.0.1:8420/"),
            (ENV_SANDBOX_ID, "sbx_1"),
            (ENV_TOKEN, "t"),
            (ENV_PING_INTERVAL_MS, "250"),
        ]))
        .expect("valid");
        assert_eq!(config.control_url, ControlUrl::WebSocket("ws://127.0.0.1:8420".to_owned()));
        assert_eq!(config.ping_interval, Duration::from_millis(250));
        assert_eq!(config.workspace, PathBuf::from("/workspace"));
    }

    #[test]
    fn names_the_variable_at_fault() {
        let error = DaemonConfig::from_strings(&strings(&[
            (ENV_CONTROL_URL, "http://x"),
            (ENV_SANDBOX_ID, "s"),
            (ENV_TOKEN, "t"),
        ]))
        .expect_err("bad url");
        assert!(error.to_string().starts_with("SANDBOXD_CONTROL_URL="), "{error}");
        let error =
            DaemonConfig::from_strings(&strings(&[(ENV_CONTROL_URL, "unix:///run/link.sock")])).expect_err("missing");
        assert_eq!(error.to_string(), "SANDBOXD_SANDBOX_ID is not set; the sandbox provider must set it");
    }
}
