//! The `write` tool: creates or overwrites a file inside the workspace, creating parent
//! directories, and reports the real number of UTF-8 bytes written.
//!
//! Writes are atomic (a temporary file in the same directory, then a rename), never follow a
//! symlink at the final component, and keep the permission bits of the file they replace.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use dari_protocol::tools::ToolResult;
use nix::fcntl::OFlag;
use serde::Deserialize;

use super::args;
use super::{ToolContext, ToolError};

pub(crate) async fn run(context: &ToolContext, arguments: serde_json::Value) -> Result<ToolResult, ToolError> {
    let args: WriteArgs = args::parse("write", arguments)?;
    let resolved = context.workspace.resolve(&args.path)?;
    let shown = context.workspace.display(&resolved);
    let root = context.workspace.root().to_path_buf();
    let guard = context.locks.lock(&resolved).await;
    let bytes = args.content.len();
    // The guard moves into the blocking task, so that the file stays locked until the write is
    // done even if this future is dropped.
    let written = tokio::task::spawn_blocking(move || {
        let _guard = guard;
        write_inside(&root, &resolved, args.content.as_bytes())
    })
    .await
    .map_err(|error| ToolError(format!("write task failed: {error}")))?;
    written.map_err(|error| ToolError(format!("Cannot write {shown}: {error}")))?;
    Ok(ToolResult::text(format!("Successfully wrote {bytes} bytes to {shown}"), serde_json::Value::Null))
}

/// Creates the parent directories of `target`, checks they are still inside `root`, and writes
/// `bytes` to `target` atomically. `target` must already be resolved inside `root`.
pub(crate) fn write_inside(root: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    if target == root {
        return Err(io::Error::other("it is the workspace root"));
    }
    let parent = target.parent().ok_or_else(|| io::Error::other("it has no parent directory"))?;
    fs::create_dir_all(parent)?;
    // A symlink may have appeared in the path since it was resolved; refuse to follow it out.
    if !fs::canonicalize(parent)?.starts_with(root) {
        return Err(io::Error::other("its directory is outside the workspace"));
    }
    write_atomically(target, bytes)
}

/// Replaces `target` with `bytes` through a temporary file in the same directory and a rename,
/// so readers see the old or the new content, never a mix. A symlink at `target` is replaced,
/// not followed. An existing file's permission bits (and, where allowed, owner) are kept.
pub(crate) fn write_atomically(target: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = target.parent().ok_or_else(|| io::Error::other("it has no parent directory"))?;
    let existing = match fs::symlink_metadata(target) {
        Ok(metadata) if metadata.is_dir() => return Err(io::Error::other("it is a directory")),
        Ok(metadata) if metadata.is_file() => Some(metadata),
        Ok(_) => None,
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(error),
    };
    let temp_path = temp_path_in(parent);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(&temp_path)?;
    let outcome = (|| {
        file.write_all(bytes)?;
        if let Some(metadata) = &existing {
            file.set_permissions(Permissions::from_mode(metadata.mode() & 0o7777))?;
            let ours = file.metadata()?;
            if (ours.uid(), ours.gid()) != (metadata.uid(), metadata.gid()) {
                // Best effort: only root may give a file away, and losing the owner is no reason
                // to lose the write.
                let _ = std::os::unix::fs::fchown(&file, Some(metadata.uid()), Some(metadata.gid()));
                // chown may clear set-id bits; put the mode back.
                file.set_permissions(Permissions::from_mode(metadata.mode() & 0o7777))?;
            }
        }
        file.sync_all()?;
        fs::rename(&temp_path, target)
    })();
    if outcome.is_err() {
        let _ = fs::remove_file(&temp_path);
    }
    outcome
}

#[derive(Debug, Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}

fn temp_path_in(directory: &Path) -> PathBuf {
    directory.join(format!(".dari-write-{:016x}.tmp", fastrand::u64(..)))
}

#[cfg(test)]
mod tests;
