//! The `bash` tool.

use dari_protocol::tools::ToolResult;
use tokio_util::sync::CancellationToken;

use super::{ToolContext, ToolError, ToolUpdate};

pub(crate) async fn run(
    _context: &ToolContext,
    _arguments: serde_json::Value,
    _cancel: CancellationToken,
    _updates: Option<tokio::sync::mpsc::Sender<ToolUpdate>>,
) -> Result<ToolResult, ToolError> {
    Err(ToolError::new("bash is being written"))
}
