//! The `grep` tool.

use super::{ToolContext, ToolError};
use dari_protocol::tools::ToolResult;
use tokio_util::sync::CancellationToken;

pub(crate) async fn run(
    _context: &ToolContext,
    _arguments: serde_json::Value,
    _cancel: CancellationToken,
) -> Result<ToolResult, ToolError> {
    Err(ToolError::new("grep is being written"))
}
