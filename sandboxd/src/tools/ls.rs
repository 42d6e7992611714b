//! The `ls` tool.

use super::{ToolContext, ToolError};
use dari_protocol::tools::ToolResult;

pub(crate) async fn run(_context: &ToolContext, _arguments: serde_json::Value) -> Result<ToolResult, ToolError> {
    Err(ToolError::new("ls is being written"))
}
