//! Choosing the files of a bundle under a deploy root: what `git ls-files` lists when the root is
//! inside a Git work tree, otherwise a walk that skips well-known clutter. Only regular files are
//! accepted, and the limits in [`BundleLimits`] are enforced here, before anything is packed.

mod git;
mod walk;

pub use self::git::{GitMetadata, git_metadata};

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use crate::files::{self, ReadFileError};
use crate::limits::{BundleLimits, Limit, Size};
use crate::os::{self, OpenRegularError};
use crate::path::{BundlePathError, check_bundle_path};

/// How the files of a bundle were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// `git ls-files --cached --others --exclude-standard`, so `.gitignore` applies.
    Git,
    /// A walk of the directory that skips [`WALK_SKIPPED_NAMES`].
    Walk,
}

/// File and directory names a walk outside Git skips at any depth, because they hold version
/// control data, local state, dependencies or caches that the sandbox rebuilds.
pub const WALK_SKIPPED_NAMES: [&str; 7] =
    [".git", ".dari", ".venv", "node_modules", ".pytest_cache", "__pycache__", ".DS_Store"];

/// The files chosen for a bundle, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedFiles {
    /// The deploy root, as given to [`select_files`].
    pub root: PathBuf,
    pub selection: Selection,
    /// Sorted by `path` in byte order, with no duplicates.
    pub files: Vec<SelectedFile>,
}

/// One regular file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedFile {
    /// The bundle path: relative, '/'-separated UTF-8 without `.` or `..` components.
    pub path: String,
    pub size: u64,
    /// Whether the file has any execute bit, which becomes mode 0755 in the archive.
    pub executable: bool,
}

/// Errors from [`select_files`]. Each names the offending path and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("read deploy root {root}; check that it exists and is a readable directory")]
    ReadRoot {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("use {root} as the deploy root: it is not a directory; pass the directory that holds dari.yml")]
    RootNotDirectory { root: PathBuf },
    #[error("run `git {args}` in {root}; check that git is installed and works in this directory")]
    RunGit {
        root: PathBuf,
        args: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "run `git {args}` in {root}: it exited with {status} ({stderr}); fix the repository, or move the deploy root out of it"
    )]
    GitFailed { root: PathBuf, args: String, status: ExitStatus, stderr: String },
    #[error("read directory {path}; check that it is readable")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read metadata of {path}; check that it is readable")]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "refuse symlink {path}: bundles hold only regular files; replace it with a copy of its target, or remove it or add it to .gitignore"
    )]
    Symlink { path: String },
    #[error("refuse {path}: it is a git submodule or a nested repository; copy its files in, or add it to .gitignore")]
    Submodule { path: String },
    #[error("refuse {kind} {path}: bundles hold only regular files; remove it or add it to .gitignore")]
    NotRegular { path: String, kind: &'static str },
    #[error("refuse {path}: the path {problem}; rename it")]
    InvalidPath { path: String, problem: BundlePathError },
    #[error("{path} is {}, over the {} limit for one file; add it to .gitignore or remove it", Size(*size), Limit(*limit))]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error(
        "{root} holds more than {limit} files; add build outputs and dependencies to .gitignore, or deploy a smaller directory"
    )]
    TooManyFiles { root: PathBuf, limit: usize },
    #[error(
        "files under {root} add up to more than {} ({} once {path} is counted); add large files to .gitignore or remove them",
        Limit(*limit),
        Size(*total)
    )]
    TotalTooLarge { root: PathBuf, path: String, total: u64, limit: u64 },
}

/// Chooses the files of the bundle rooted at `root` and checks them against `limits`.
///
/// Inside a Git work tree this is what `git ls-files --cached --others --exclude-standard` lists
/// under `root`, minus files deleted from disk; outside Git it is a walk that skips
/// [`WALK_SKIPPED_NAMES`]. Symlinks, submodules and other non-regular files are refused rather
/// than skipped, so a deploy never silently misses a file the user expects.
pub fn select_files(root: &Path, limits: &BundleLimits) -> Result<SelectedFiles, SelectError> {
    let root_metadata = fs::metadata(root).map_err(|source| SelectError::ReadRoot { root: root.to_owned(), source })?;
    if !root_metadata.is_dir() {
        return Err(SelectError::RootNotDirectory { root: root.to_owned() });
    }
    let selection = git::detect(root)?;
    let mut collector = Collector { root, limits, files: Vec::new(), total_bytes: 0 };
    match selection {
        Selection::Git => git::collect(&mut collector)?,
        Selection::Walk => walk::collect(&mut collector)?,
    }
    let mut files = collector.files;
    // Both sources yield each path once, so sorting is all that is left to do.
    files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(SelectedFiles { root: root.to_owned(), selection, files })
}

/// Gathers accepted files and enforces the limits as they arrive, so a huge tree fails early.
struct Collector<'a> {
    root: &'a Path,
    limits: &'a BundleLimits,
    files: Vec<SelectedFile>,
    total_bytes: u64,
}

// === impl SelectedFiles ===

impl SelectedFiles {
    /// Reads the file at bundle path `path` from disk, failing if it is larger than `max_bytes`
    /// or is no longer a regular file.
    pub fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, ReadFileError> {
        if !self.contains(path) {
            return Err(ReadFileError::NotInBundle { path: path.to_owned() });
        }
        let (file, metadata) = os::open_regular(&self.root.join(path)).map_err(|e| match e {
            OpenRegularError::Symlink => ReadFileError::Symlink { path: path.to_owned() },
            OpenRegularError::NotRegular(kind) => ReadFileError::NotRegular { path: path.to_owned(), kind },
            OpenRegularError::Io(source) => ReadFileError::Io { path: path.to_owned(), source },
        })?;
        if metadata.len() > max_bytes {
            return Err(ReadFileError::TooLarge { path: path.to_owned(), size: metadata.len(), limit: max_bytes });
        }
        files::read_limited(file, path, max_bytes)
    }

    /// Whether `path` is one of the selected files.
    pub fn contains(&self, path: &str) -> bool {
        files::find(&self.files, path).is_some()
    }

    /// The bundle paths, in sorted order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|file| file.path.as_str())
    }
}

// === impl Collector ===

impl Collector<'_> {
    /// Accepts the regular file at bundle path `path`, or refuses it with the reason.
    fn add(&mut self, path: &str, metadata: &Metadata) -> Result<(), SelectError> {
        let file_type = metadata.file_type();
        if file_type.is_symlink() {
            return Err(SelectError::Symlink { path: path.to_owned() });
        }
        if !file_type.is_file() {
            return Err(SelectError::NotRegular { path: path.to_owned(), kind: os::kind_name(file_type) });
        }
        check_bundle_path(path.as_bytes(), self.limits.max_path_bytes)
            .map_err(|problem| SelectError::InvalidPath { path: path.to_owned(), problem })?;
        let size = metadata.len();
        if size > self.limits.max_file_bytes {
            return Err(SelectError::FileTooLarge { path: path.to_owned(), size, limit: self.limits.max_file_bytes });
        }
        if self.files.len() >= self.limits.max_files {
            return Err(SelectError::TooManyFiles { root: self.root.to_owned(), limit: self.limits.max_files });
        }
        self.total_bytes = self.total_bytes.saturating_add(size);
        if self.total_bytes > self.limits.max_total_bytes {
            return Err(SelectError::TotalTooLarge {
                root: self.root.to_owned(),
                path: path.to_owned(),
                total: self.total_bytes,
                limit: self.limits.max_total_bytes,
            });
        }
        let executable = metadata.permissions().mode() & 0o111 != 0;
        self.files.push(SelectedFile { path: path.to_owned(), size, executable });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
