//! `workspace.archive` and `workspace.restore`: the workspace as a tar.gz, sent to control with an
//! HTTP PUT and brought back into a fresh sandbox.
//!
//! The archive holds regular files (with their modes and mtimes), directories and symlinks whose
//! target stays inside the workspace, with paths relative to the workspace root; it never holds
//! `.dari/agent-resources` (the source bundle, materialized again in every sandbox). Packing
//! leaves out what a restore would refuse, so whatever packs also restores (`pack.rs`).
//!
//! A restore trusts nothing in the archive: its size and sha256 are checked first, then every
//! entry is checked in a first pass before anything is written, and the second pass writes each
//! file beside its place and renames it in, never through a symlink (`unpack.rs`). It expects
//! nothing else to change the workspace while it runs.
//!
//! Archives go through an unlinked temporary file in the system's temporary directory, so neither
//! side holds one in memory; the packing and unpacking run in tokio's blocking pool.

mod pack;
#[cfg(test)]
mod tests;
mod unpack;

use std::fs::File;
use std::path::{Path, PathBuf};

use dari_bundle::BundlePathError;
use dari_protocol::link::{WorkspaceArchive, WorkspaceArchived, WorkspaceRestore, WorkspaceRestored};

use crate::bundle::AGENT_RESOURCES;
use crate::transfer::{ControlEndpoint, Downloaded, TransferError};

/// The longest path an archive holds, in bytes.
const MAX_PATH_BYTES: usize = 4096;
/// The most entries a restore accepts.
const MAX_ENTRIES: usize = 1_000_000;
/// How many left-out paths an archive's value lists.
const MAX_SKIPPED_LISTED: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("exclude path {path:?}: the path {problem}; give paths relative to the workspace")]
    BadExclude { path: String, problem: BundlePathError },
    #[error("the URL {url:?} is not a control path or an http:// URL")]
    BadUrl { url: String },
    #[error(
        "the workspace archive is over the limit of {limit} bytes (max_bytes); exclude large directories or raise the limit"
    )]
    TooLarge { limit: u64 },
    #[error("send the workspace archive")]
    Send(#[source] TransferError),
    #[error("fetch the workspace archive")]
    Fetch(#[source] TransferError),
    #[error("the workspace archive has {actual} bytes but {expected} were announced")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("the workspace archive has sha256 {actual} but {expected} was announced")]
    HashMismatch { expected: String, actual: String },
    #[error("refuse entry {path}: {problem}; nothing was restored")]
    UnsafeEntry { path: String, problem: String },
    #[error("refuse the workspace archive: it has more than {limit} entries; nothing was restored")]
    TooManyEntries { limit: usize },
    #[error("read the workspace archive: it is corrupt or truncated")]
    ReadArchive(#[source] std::io::Error),
    #[error("{operation} {path}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    /// Whether the request itself was wrong, rather than the work failing.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, ArchiveError::BadExclude { .. } | ArchiveError::BadUrl { .. })
    }
}

/// Packs the workspace and PUTs the archive to `request.url`.
pub async fn archive(
    workspace: &Path,
    control: &ControlEndpoint,
    request: &WorkspaceArchive,
) -> Result<WorkspaceArchived, ArchiveError> {
    let exclude = check_excludes(&request.exclude)?;
    if !control.accepts_url(&request.url) {
        return Err(ArchiveError::BadUrl { url: request.url.clone() });
    }
    let (file, temp_path) = temp_file()?;
    let (root, max_bytes) = (workspace.to_owned(), request.max_bytes);
    let packed = tokio::task::spawn_blocking(move || pack::pack(&root, &exclude, max_bytes, file, &temp_path))
        .await
        .unwrap_or_else(|join_error| Err(joined(join_error)))?;
    let file = tokio::fs::File::from_std(packed.file);
    control.upload(&request.url, file, packed.size_bytes, "application/gzip").await.map_err(ArchiveError::Send)?;
    Ok(WorkspaceArchived {
        sha256: packed.sha256,
        size_bytes: packed.size_bytes,
        file_count: packed.file_count,
        skipped: packed.skipped,
    })
}

/// Fetches the archive, checks its size and sha256, and unpacks it over the workspace.
pub async fn restore(
    workspace: &Path,
    control: &ControlEndpoint,
    request: &WorkspaceRestore,
) -> Result<WorkspaceRestored, ArchiveError> {
    let (file, temp_path) = temp_file()?;
    let mut file = tokio::fs::File::from_std(file);
    let downloaded =
        control.download(&request.url, request.size_bytes, &mut file, &temp_path).await.map_err(ArchiveError::Fetch)?;
    verify(&downloaded, request)?;
    let file = file.into_std().await;
    let root = workspace.to_owned();
    let file_count = tokio::task::spawn_blocking(move || unpack::unpack(file, &root))
        .await
        .unwrap_or_else(|join_error| Err(joined(join_error)))?;
    Ok(WorkspaceRestored { file_count })
}

/// Checks a download against what control announced.
fn verify(downloaded: &Downloaded, request: &WorkspaceRestore) -> Result<(), ArchiveError> {
    if downloaded.size_bytes != request.size_bytes {
        return Err(ArchiveError::SizeMismatch { expected: request.size_bytes, actual: downloaded.size_bytes });
    }
    if !downloaded.sha256.eq_ignore_ascii_case(&request.sha256) {
        return Err(ArchiveError::HashMismatch { expected: request.sha256.clone(), actual: downloaded.sha256.clone() });
    }
    Ok(())
}

/// The excluded paths, without trailing slashes, checked like archive paths.
fn check_excludes(exclude: &[String]) -> Result<Vec<String>, ArchiveError> {
    let mut checked = vec![AGENT_RESOURCES.to_owned()];
    for path in exclude {
        let trimmed = path.trim_end_matches('/');
        let trimmed = dari_bundle::check_bundle_path(trimmed.as_bytes(), MAX_PATH_BYTES)
            .map_err(|problem| ArchiveError::BadExclude { path: path.clone(), problem })?;
        checked.push(trimmed.to_owned());
    }
    Ok(checked)
}

/// Why a symlink at `link_path` (a workspace path) to `target` could lead outside the workspace,
/// or None when it cannot. The target must be relative, and may climb with `..` only before its
/// first name: a `..` after a name would go up from wherever that name leads, which another
/// symlink may redirect. Climbing may not pass the workspace root.
fn symlink_escape(link_path: &str, target: &str) -> Option<&'static str> {
    if target.is_empty() {
        return Some("its target is empty");
    }
    if target.starts_with('/') {
        return Some("it is a symlink to an absolute path");
    }
    if target.contains('\0') {
        return Some("its target contains a NUL byte");
    }
    // The directories above the link, which `..` climbs.
    let mut depth = link_path.matches('/').count();
    let mut named = false;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." if named => return Some("its target has '..' after a name, which a symlink could redirect"),
            ".." if depth == 0 => return Some("it is a symlink that leads outside the workspace"),
            ".." => depth -= 1,
            _ => named = true,
        }
    }
    None
}

/// Creates an unlinked, private file in the system's temporary directory, and its former name for
/// messages.
fn temp_file() -> Result<(File, PathBuf), ArchiveError> {
    use std::os::unix::fs::OpenOptionsExt;
    let directory = std::env::temp_dir();
    loop {
        let path =
            directory.join(format!(".sandboxd-workspace-{}-{:016x}.tar.gz", std::process::id(), fastrand::u64(..)));
        match std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path) {
            Ok(file) => {
                std::fs::remove_file(&path).map_err(|source| io("remove", &path, source))?;
                return Ok((file, path));
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(io("create", &path, source)),
        }
    }
}

fn joined(join_error: tokio::task::JoinError) -> ArchiveError {
    io("run", Path::new("the archive task"), std::io::Error::other(join_error))
}

fn io(operation: &'static str, path: &Path, source: std::io::Error) -> ArchiveError {
    ArchiveError::Io { operation, path: path.to_owned(), source }
}
