//! The `dari.yml` manifest: the validated model, and the validation that produces it.
//!
//! [`validate`] reads `dari.yml` and checks it against the bundle's files in one pass, returning
//! every problem with its file, field path, line, column and a hint. A [`Manifest`] comes out only
//! when there is no error. The model serializes to JSON: that is how the server stores a version's
//! manifest and how the API returns it.

mod bundle_checks;
mod diagnostics;
mod names;
mod parse;
mod reader;
mod skills;
mod tools;
mod yaml;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use self::diagnostics::{Diagnostic, MANIFEST_FILE, Severity};
pub use self::names::{BuiltInTool, is_credential_name, reserved_env_name};
pub use self::tools::{CodeFirstModule, code_first_tools};

/// The files of a source bundle, as the validator needs them. Implemented over a directory by the
/// CLI and over an uploaded archive by the server.
pub trait BundleFiles {
    /// Whether a regular file exists at this bundle path (`/`-separated, relative).
    fn contains(&self, path: &str) -> bool;
    /// Every file path in the bundle, sorted.
    fn paths(&self) -> Box<dyn Iterator<Item = &str> + '_>;
    /// The file's bytes, refusing files over `max_bytes`.
    fn read(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, BundleReadError>;
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum BundleReadError {
    #[error("file not found")]
    NotFound,
    #[error("file is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("cannot read file: {0}")]
    Unreadable(String),
}

/// The outcome of validating a manifest: the model when valid, and every diagnostic.
#[derive(Debug, Serialize, Deserialize)]
pub struct Validation {
    pub manifest: Option<Manifest>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Validates `dari.yml` (its bytes) against the bundle's files.
pub fn validate(dari_yml: &[u8], files: &dyn BundleFiles) -> Validation {
    parse::validate(dari_yml, files)
}

/// A valid `dari.yml`. Field names follow the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub harness: Harness,
    pub instructions: Instructions,
    pub llm: Option<Llm>,
    pub sandbox: Sandbox,
    /// The built-in tools the agent gets: the default set when omitted, none for `[]`.
    pub built_in_tools: Vec<BuiltInTool>,
    /// Declared tools, then code-first tools discovered under `tools/<name>/tool.ts`.
    pub custom_tools: Vec<CustomTool>,
    pub skills: Vec<Skill>,
    pub extensions: Vec<Extension>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Harness {
    /// The managed pi coding-agent loop, run by the control plane.
    #[serde(rename = "pi")]
    Pi,
    /// The user's own HTTP server in the sandbox, spoken to with `dari-runtime-v1`.
    #[serde(rename = "customRuntimeServer")]
    CustomRuntimeServer(CustomRuntimeServer),
}

/// The only custom runtime protocol there is.
pub const RUNTIME_PROTOCOL: &str = "dari-runtime-v1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomRuntimeServer {
    /// Run with `sh -c` in the source bundle directory.
    pub command: String,
    pub port: u16,
    pub health_path: String,
    pub advance_path: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instructions {
    /// Bundle path of the system prompt (Markdown).
    pub system: String,
}

/// The models a session may use: the single `model` form is the option named `default`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Llm {
    /// The option used when a session names no `llm_id`; always a key of `options`.
    pub default: String,
    pub options: BTreeMap<String, LlmOption>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmOption {
    pub provider: LlmProvider,
    pub model: String,
    pub base_url: Option<String>,
    pub api_key_secret: Option<String>,
    pub retry_policy: Option<RetryPolicy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmProvider {
    Openai,
    Anthropic,
    Openrouter,
}

/// Fields left out take the platform's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub maximum_attempts: Option<u32>,
    pub initial_interval_seconds: Option<u32>,
    pub backoff_coefficient: Option<f64>,
    pub maximum_interval_seconds: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    /// `None` leaves the choice to the server's configured default provider.
    pub provider: Option<SandboxProvider>,
    pub provider_api_key_secret: Option<String>,
    pub dockerfile: Option<String>,
    pub env: BTreeMap<String, String>,
    pub secrets: Vec<String>,
    pub resources: Resources,
    pub runtimes: Runtimes,
    pub apt_packages: Vec<String>,
    pub setup_script: Option<String>,
    pub internet_access: bool,
    pub storage_mount_path: String,
    pub storage_binding: Option<String>,
}

/// The only mount path the platform supports for session storage.
pub const WORKSPACE_PATH: &str = "/workspace";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxProvider {
    /// Sandboxes on the control plane's own machine.
    Local,
    E2b,
    Modal,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: Option<u32>,
    pub memory_mb: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Runtimes {
    pub node: Option<String>,
    pub python: Option<String>,
    pub go: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomTool {
    /// The name the model sees.
    pub name: String,
    /// The tool's directory in the bundle, `tools/<dir>`.
    pub path: String,
    pub kind: ToolKind,
    pub source: ToolSource,
    pub description: Option<String>,
    pub runtime: Option<ToolRuntime>,
    pub handler: Option<Handler>,
    /// JSON Schemas from `tool.yml`. Code-first tools export theirs from code; the sandbox reads
    /// them when the version is prepared.
    pub input_schema: Option<serde_json::Value>,
    pub output_schema: Option<serde_json::Value>,
    pub retries: Option<u32>,
    pub retry_policy: Option<RetryPolicy>,
    pub timeout_seconds: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    /// Run by the platform in the session's sandbox.
    Main,
    /// Run by the client, which submits the result.
    External,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolSource {
    /// `tools/<name>/tool.yml` with schema files.
    Directory,
    /// `tools/<name>/tool.ts` exporting `description`, `inputSchema` and `handler`.
    CodeFirst,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolRuntime {
    Typescript,
    Python,
}

/// `file:function`, with `file` resolved to a bundle path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handler {
    pub file: String,
    pub function: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skill {
    pub name: String,
    /// The skill's directory; its playbook is `<path>/SKILL.md`.
    pub path: String,
    pub description: String,
    pub disable_model_invocation: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    /// Always `extensions/<name>`.
    pub path: String,
}

/// Bundle files held in memory: for tests, and for callers that already hold a small bundle.
#[derive(Clone, Debug, Default)]
pub struct MemoryFiles {
    files: BTreeMap<String, Vec<u8>>,
}

// === impl MemoryFiles ===

impl MemoryFiles {
    pub fn new() -> MemoryFiles {
        MemoryFiles::default()
    }

    pub fn insert(&mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), contents.into());
    }

    /// Adds a file, builder style.
    pub fn with(mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) -> MemoryFiles {
        self.insert(path, contents);
        self
    }

    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }
}

impl BundleFiles for MemoryFiles {
    fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    fn paths(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        Box::new(self.files.keys().map(String::as_str))
    }

    fn read(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, BundleReadError> {
        let contents = self.files.get(path).ok_or(BundleReadError::NotFound)?;
        let size = contents.len() as u64;
        if size > max_bytes {
            return Err(BundleReadError::TooLarge { size, limit: max_bytes });
        }
        Ok(contents.clone())
    }
}

#[cfg(test)]
mod tests;
