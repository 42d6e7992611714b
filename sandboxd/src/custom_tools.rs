//! Custom tools of kind `main`: a Python or TypeScript handler from the source bundle, run in its
//! own process with the input as JSON and its return value read back as JSON.

use std::path::Path;

use dari_protocol::link::{CustomToolRun, Outcome, error_code};
use tokio_util::sync::CancellationToken;

use crate::tools::ToolContext;

/// Runs the handler named by `request` and returns its output, or an error with its logs.
pub async fn run(
    _tools: &ToolContext,
    _bundle_root: &Path,
    request: CustomToolRun,
    _cancel: CancellationToken,
) -> Outcome {
    Outcome::error(error_code::UNSUPPORTED_OPERATION, format!("custom tool {} cannot run yet", request.name))
}
