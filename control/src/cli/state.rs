//! The CLI's own state, `state.json` in its config directory: per API URL, the key and
//! organization to use, and which URL is current. `dari dev` writes it on first start so that the
//! next commands just work.
//!
//! The directory is `$DARI_CONFIG_DIR`, else `$XDG_CONFIG_HOME/dari`, else `~/.config/dari`. The
//! file holds API keys, so it is written with mode 0600.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub const ENV_CONFIG_DIR: &str = "DARI_CONFIG_DIR";
const STATE_FILE: &str = "state.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CliState {
    /// The API URL commands use when neither `--api-url` nor `DARI_API_URL` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(default)]
    pub servers: BTreeMap<String, ServerProfile>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerProfile {
    pub api_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
}

pub fn config_dir() -> Option<PathBuf> {
    let from_env = |key: &str| std::env::var_os(key).filter(|value| !value.is_empty()).map(PathBuf::from);
    from_env(ENV_CONFIG_DIR)
        .or_else(|| from_env("XDG_CONFIG_HOME").map(|dir| dir.join("dari")))
        .or_else(|| from_env("HOME").map(|home| home.join(".config").join("dari")))
}

impl CliState {
    /// Reads the state; a missing file is an empty state.
    pub fn load() -> anyhow::Result<CliState> {
        let Some(path) = config_dir().map(|dir| dir.join(STATE_FILE)) else {
            return Ok(CliState::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                serde_json::from_str(&text).with_context(|| format!("read {}: fix or delete the file", path.display()))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(CliState::default()),
            Err(error) => Err(error).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Writes the state atomically, readable only by its owner. Returns the path.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = config_dir().context("no config directory: set DARI_CONFIG_DIR or HOME")?;
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join(STATE_FILE);
        let temporary = dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).context("render the CLI state")?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("write {}", temporary.display()))?;
        file.write_all(text.as_bytes()).with_context(|| format!("write {}", temporary.display()))?;
        std::fs::rename(&temporary, &path).with_context(|| format!("replace {}", path.display()))?;
        Ok(path)
    }
}
