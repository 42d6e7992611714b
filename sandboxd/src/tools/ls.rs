//! The `ls` tool: one directory's entries, sorted case-insensitively, `/` after directories,
//! dotfiles included, within an entry limit and pi's 50 KB.

use std::fs;
use std::io;
use std::path::Path;

use dari_protocol::tools::ToolResult;
use serde::Deserialize;

use super::args::{self, lenient_u64};
use super::truncate::{DEFAULT_MAX_BYTES, format_size, truncate_head};
use super::{ToolContext, ToolError};

/// Entries listed when the call names no limit.
pub(crate) const DEFAULT_LIMIT: usize = 500;

pub(crate) async fn run(context: &ToolContext, arguments: serde_json::Value) -> Result<ToolResult, ToolError> {
    let args: LsArgs = args::parse("ls", arguments)?;
    let written = args.path.as_deref().unwrap_or(".");
    let resolved = context.workspace.resolve(written)?;
    let shown = context.workspace.display(&resolved);
    let limit = args.limit.map_or(DEFAULT_LIMIT, |limit| usize::try_from(limit).unwrap_or(usize::MAX)).max(1);
    let root = context.workspace.root().to_path_buf();
    tokio::task::spawn_blocking(move || list(&root, &resolved, &shown, limit))
        .await
        .map_err(|error| ToolError(format!("ls task failed: {error}")))?
}

#[derive(Debug, Deserialize)]
struct LsArgs {
    #[serde(default)]
    path: Option<String>,
    #[serde(default, with = "lenient_u64")]
    limit: Option<u64>,
}

fn list(root: &Path, directory: &Path, shown: &str, limit: usize) -> Result<ToolResult, ToolError> {
    match fs::metadata(directory) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(ToolError(format!("Not a directory: {shown}"))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(ToolError(format!("Path not found: {shown}")));
        }
        Err(error) => return Err(ToolError(format!("Cannot list {shown}: {error}"))),
    }
    let entries = fs::read_dir(directory).map_err(|error| ToolError(format!("Cannot list {shown}: {error}")))?;
    let mut listed = Vec::new();
    for entry in entries {
        // Entries that vanish or cannot be read are skipped, as in pi.
        let Ok(entry) = entry else { continue };
        let Ok(file_type) = entry.file_type() else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = if file_type.is_symlink() { is_directory_inside(root, &entry.path()) } else { file_type.is_dir() };
        listed.push((name.to_lowercase(), name, is_dir));
    }
    // Sorted by name before the `/` is added, as pi does.
    listed.sort();
    let mut names: Vec<String> =
        listed.into_iter().map(|(_, name, is_dir)| if is_dir { format!("{name}/") } else { name }).collect();
    if names.is_empty() {
        return Ok(ToolResult::text("(empty directory)", serde_json::Value::Null));
    }
    let entry_limit_reached = names.len() > limit;
    names.truncate(limit);
    let truncation = truncate_head(&names.join("\n"), usize::MAX, DEFAULT_MAX_BYTES);
    let mut notices = Vec::new();
    let mut details = serde_json::Map::new();
    if entry_limit_reached {
        notices.push(format!("{limit} entries limit reached. Use limit={} for more", limit.saturating_mul(2)));
        details.insert("entryLimitReached".to_owned(), limit.into());
    }
    if truncation.truncated {
        notices.push(format!("{} limit reached", format_size(DEFAULT_MAX_BYTES)));
        details.insert("truncation".to_owned(), serde_json::to_value(&truncation).expect("truncation serializes"));
    }
    let mut text = truncation.content;
    if !notices.is_empty() {
        text.push_str(&format!("\n\n[{}]", notices.join(". ")));
    }
    let details = if details.is_empty() { serde_json::Value::Null } else { serde_json::Value::Object(details) };
    Ok(ToolResult::text(text, details))
}

/// Whether a symlink leads to a directory inside the workspace. Broken links and links out of the
/// workspace are listed as plain names.
fn is_directory_inside(root: &Path, link: &Path) -> bool {
    fs::canonicalize(link).is_ok_and(|target| target.starts_with(root) && target.is_dir())
}

#[cfg(test)]
mod tests;
