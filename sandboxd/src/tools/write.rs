//! The `write` tool.

use super::{ToolContext, ToolError};
use dari_protocol::tools::ToolResult;

pub(crate) async fn run(_context: &ToolContext, _arguments: serde_json::Value) -> Result<ToolResult, ToolError> {
    Err(ToolError::new("write is being written"))
}
