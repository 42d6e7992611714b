//! The seven built-in tools, with pi's parameter names, limits and texts, confined to the
//! workspace.
//!
//! Every tool takes its arguments as JSON and returns a [`ToolResult`]. A tool that fails returns
//! a result with `is_error` set and a message for the model; nothing here panics on bad input.

mod args;
mod bash;
mod edit;
mod find;
mod grep;
mod locks;
mod ls;
mod read;
#[cfg(test)]
mod test_support;
mod truncate;
mod workspace;
mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use dari_protocol::tools::ToolResult;
use tokio_util::sync::CancellationToken;

pub use self::locks::FileLocks;
pub use self::truncate::{DEFAULT_MAX_BYTES, DEFAULT_MAX_LINES, GREP_MAX_LINE_CHARS};
pub use self::workspace::Workspace;

/// The names of the built-in tools, in pi's order.
pub const TOOL_NAMES: [&str; 7] = ["read", "bash", "edit", "write", "grep", "find", "ls"];

/// The workspace's real path, for commands and custom tools: `/workspace` in a jail, elsewhere
/// in an unjailed local sandbox.
pub const ENV_WORKSPACE: &str = "DARI_WORKSPACE";

/// What tools share: the workspace they are confined to, per-file locks, and bash's settings.
#[derive(Clone, Debug)]
pub struct ToolContext {
    pub workspace: Workspace,
    pub locks: FileLocks,
    pub bash: BashConfig,
}

/// Settings of the bash tool.
#[derive(Clone, Debug)]
pub struct BashConfig {
    /// Used when the call gives no timeout.
    pub default_timeout: Duration,
    /// A call's timeout is clamped to this.
    pub max_timeout: Duration,
    /// Where full outputs that were truncated are saved, named in the footer.
    pub output_dir: PathBuf,
    /// The shell: `/bin/bash`, or `sh` where there is no bash.
    pub shell: PathBuf,
    /// Variables every command sees: `DARI_SOURCE_BUNDLE_ROOT`, `DARI_WORKSPACE`.
    pub env: Vec<(String, String)>,
}

impl BashConfig {
    /// How long a bash call may run when it names no timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
    /// The longest a bash call may ask for.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 60);

    /// The defaults for a workspace: full outputs go to `<workspace>/.dari/tool-output`, inside
    /// the workspace so that the model can `read` them.
    pub fn for_workspace(root: &Path) -> BashConfig {
        let shell = crate::process::default_shell();
        BashConfig {
            default_timeout: BashConfig::DEFAULT_TIMEOUT,
            max_timeout: BashConfig::MAX_TIMEOUT,
            output_dir: root.join(".dari/tool-output"),
            shell: PathBuf::from(shell),
            env: vec![
                (
                    crate::bundle::ENV_SOURCE_BUNDLE_ROOT.to_owned(),
                    crate::bundle::source_bundle_root(root).display().to_string(),
                ),
                (ENV_WORKSPACE.to_owned(), root.display().to_string()),
            ],
        }
    }
}

/// A tool's failure, as the text the model reads.
#[derive(Debug, PartialEq, Eq)]
pub struct ToolError(pub String);

impl ToolError {
    pub fn new(message: impl Into<String>) -> ToolError {
        ToolError(message.into())
    }
}

impl From<std::io::Error> for ToolError {
    fn from(error: std::io::Error) -> ToolError {
        ToolError(error.to_string())
    }
}

/// Progress of a long-running tool (bash), streamed while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolUpdate {
    /// New output since the previous update.
    pub chunk: String,
}

/// Runs one built-in tool. `cancel` aborts it (bash kills its process group); `updates` receives
/// streamed output where the tool has any.
pub async fn run_tool(
    context: &ToolContext,
    name: &str,
    arguments: serde_json::Value,
    cancel: CancellationToken,
    updates: Option<tokio::sync::mpsc::Sender<ToolUpdate>>,
) -> ToolResult {
    let outcome = match name {
        "read" => read::run(context, arguments).await,
        "bash" => bash::run(context, arguments, cancel, updates).await,
        "edit" => edit::run(context, arguments).await,
        "write" => write::run(context, arguments).await,
        "grep" => grep::run(context, arguments, cancel).await,
        "find" => find::run(context, arguments, cancel).await,
        "ls" => ls::run(context, arguments).await,
        _ => Err(ToolError(format!("unknown tool {name:?}; built-in tools are {}", TOOL_NAMES.join(", ")))),
    };
    outcome.unwrap_or_else(|ToolError(message)| ToolResult::error(message, serde_json::Value::Null))
}
