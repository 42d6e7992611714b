//! Safe extraction of a bundle archive, used in the sandbox and by the server to read a snapshot.
//!
//! Nothing in an archive is trusted: only regular files and directories are accepted, every path
//! is checked before use, sizes are checked before and while reading, and the tree is built in a
//! fresh sibling directory that becomes `dest` only when everything succeeded. The tar crate's
//! `unpack` is never used.

mod disk;
mod entries;
mod memory;
mod stream;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use self::memory::{ArchiveFiles, read_archive};
use crate::limits::{BundleLimits, Limit, Size};
use crate::path::BundlePathError;
use crate::select::SelectedFile;

/// How [`extract`] checks and lays out a bundle.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions<'a> {
    pub limits: &'a BundleLimits,
    /// Lowercase hex sha256 the compressed archive must have, if known.
    pub expected_sha256: Option<&'a str>,
    /// Make files 0444 (0555 if executable) and directories 0555 once everything is written, so
    /// the sandbox cannot change the source it was given.
    pub read_only: bool,
}

/// A bundle extracted to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedBundle {
    /// The `dest` given to [`extract`].
    pub root: PathBuf,
    /// Sorted by path.
    pub files: Vec<SelectedFile>,
    /// Lowercase hex sha256 of the compressed archive.
    pub sha256: String,
}

/// Errors from [`extract`] and [`read_archive`]. Each names the offending entry or directory and
/// how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("extract bundle into {dest}: it already exists; remove it or choose a new directory")]
    DestExists { dest: PathBuf },
    #[error(
        "extract bundle into {dest}: the path has no final component; pass a directory path such as /srv/bundles/abc"
    )]
    InvalidDest { dest: PathBuf },
    #[error("inspect {dest} before extracting; check that its parent directory is readable")]
    InspectDest {
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("create directory {path}; check that the parent exists, is writable and has free space")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("create file {path}; check that the directory is writable and has free space")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write file {path}; check free space")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("set permissions of {path}; check that this process owns it")]
    SetPermissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rename {from} to {to}; check that {to} does not exist and its parent is writable")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read bundle archive {position}: it is corrupt or truncated; pack and upload it again")]
    ReadArchive {
        position: String,
        #[source]
        source: io::Error,
    },
    #[error("read bundle archive: it has data after the end of the gzip stream; pack and upload it again")]
    TrailingData,
    #[error("read bundle archive {position}: it is over the {} limit for an archive; pack a smaller bundle", Limit(*limit))]
    ArchiveTooLarge { position: String, limit: u64 },
    #[error("read bundle archive {position}: it expands to more than {}, more than any bundle within the limits; pack a smaller bundle", Limit(*limit))]
    DecompressedTooLarge { position: String, limit: u64 },
    #[error("verify bundle archive: expected sha256 {expected} but the archive has {actual}; upload the bundle again")]
    HashMismatch { expected: String, actual: String },
    #[error(
        "refuse entry {path}: it is a {kind}, and bundles hold only regular files and directories; repack without it"
    )]
    UnsupportedEntry { path: String, kind: String },
    #[error("refuse entry {path}: the path {problem}; repack with relative paths inside the deploy root")]
    UnsafePath { path: String, problem: BundlePathError },
    #[error("refuse entry {path}: it appears twice in the archive; repack it")]
    DuplicatePath { path: String },
    #[error("refuse entry {path}: {other} would be both a file and a directory; repack it")]
    PathConflict { path: String, other: String },
    #[error("read the header of entry {path}: it is malformed; pack and upload the archive again")]
    InvalidHeader {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("refuse entry {path}: the archive has more than {limit} files; pack a smaller bundle")]
    TooManyFiles { path: String, limit: usize },
    #[error("refuse entry {path}: the archive has more than {limit} directory entries; pack a smaller bundle")]
    TooManyDirectories { path: String, limit: usize },
    #[error("refuse entry {path}: it is {}, over the {} limit for one file; remove it from the bundle", Size(*size), Limit(*limit))]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error(
        "refuse entry {path}: the files add up to more than {} ({} with this one); pack a smaller bundle",
        Limit(*limit),
        Size(*total)
    )]
    TotalTooLarge { path: String, total: u64, limit: u64 },
    #[error("read entry {path}: the archive ends after {actual} of its {expected} bytes; pack and upload it again")]
    TruncatedEntry { path: String, expected: u64, actual: u64 },
}

/// Extracts the tar.gz `archive` into `dest`, which must not exist yet.
///
/// The tree is built in a fresh sibling directory named `.{dest_name}.partial-{pid}-{n}` and
/// renamed to `dest` only when every entry passed its checks and the hash matched; on any error
/// the partial directory is removed, so `dest` either holds the whole bundle or does not exist.
pub fn extract(archive: impl Read, dest: &Path, options: &ExtractOptions<'_>) -> Result<ExtractedBundle, ExtractError> {
    ensure_absent(dest)?;
    let Some(dest_name) = dest.file_name() else {
        return Err(ExtractError::InvalidDest { dest: dest.to_owned() });
    };
    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let partial = disk::PartialDir::create(parent, dest_name)?;
    let mut sink = disk::DiskSink::new(partial.path().to_owned());
    let summary = entries::walk_archive(archive, options.limits, options.expected_sha256, &mut sink)?;
    if options.read_only {
        sink.make_read_only()?;
    }
    // `rename` replaces an empty directory, so look again right before it; the window left is
    // between this check and the rename.
    ensure_absent(dest)?;
    partial.rename_to(dest)?;
    Ok(ExtractedBundle { root: dest.to_owned(), files: summary.files, sha256: summary.sha256 })
}

fn ensure_absent(dest: &Path) -> Result<(), ExtractError> {
    match fs::symlink_metadata(dest) {
        Ok(_) => Err(ExtractError::DestExists { dest: dest.to_owned() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ExtractError::InspectDest { dest: dest.to_owned(), source }),
    }
}

#[cfg(test)]
mod tests;
